"""Layer 0, foundations: errors, atomic I/O, the activation grammar, losses and data.

Nothing here imports any other part of probe.
"""
