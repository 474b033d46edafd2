"""Compiling and training multi-task models."""
