"""Layer 5, experiment: train activation variants side by side and compare them, paired by seed."""
