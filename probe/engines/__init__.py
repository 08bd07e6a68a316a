"""Layer 3, the engines: sources of the per-layer tensors (x, z, g, slope, h, W).

``hooks`` + ``analysis`` borrow a trained model's forward and backward passes;
``training`` trains a batched ensemble of variants. Both feed the same
:class:`probe.diagnostics.Collector`.
"""
