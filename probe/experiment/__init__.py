"""Layer 5, experiment: scenarios, the notebook workflows, slope sweeps and the study."""
