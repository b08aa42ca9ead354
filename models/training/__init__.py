"""Training code for the shipped models (needs the ``train`` extra: tensorflow-cpu)."""
