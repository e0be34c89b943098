"""Renderers of engine events: the live terminal view, JSON lines, and the recorders."""
