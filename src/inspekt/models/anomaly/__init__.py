"""Anomaly methods trained on normal images only; importing this registers them (see ``base`` for
the contract every method follows)."""
