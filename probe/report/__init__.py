"""Showing results: terminal tables, verdicts, markdown and plots. Nothing here computes diagnostics."""
