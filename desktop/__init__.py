"""Stagewise front ends: the command line and (later) the PySide6 window."""
