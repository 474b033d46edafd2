"""Diagnostics of a multi-task training, apart from training itself: how the tasks help or hinder one another."""

from __future__ import annotations

from mtl_keras.analysis.affinity import TaskAffinity

__all__ = ["TaskAffinity"]
