"""Layer 7, integrations: probe inside training frameworks (each an optional extra)."""
