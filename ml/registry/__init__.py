"""The model registry gate: a new ``fraud_scoring`` version becomes ``challenger``; ``champion``
moves only when the challenger wins on the same held-out window (``ml.registry.gate``)."""
