"""Shared trunks: the part of a multi-task model that every task uses."""
