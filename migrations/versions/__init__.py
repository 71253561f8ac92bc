"""Numbered revisions: 0001_initial.py, 0002_..."""
