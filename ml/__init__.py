"""Fraud ML of paydata: feature definitions and stores (``ml.features``), training (``ml.training``)
and the model registry gate (``ml.registry``)."""
