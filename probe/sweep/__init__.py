"""``probe sweep``: a grid of scenario settings, each cell one batched compare, run by an executor."""
