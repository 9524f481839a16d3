"""Stagewise front ends: the PySide6 window and the command line."""
