"""The online fraud scorer: FastAPI service over the online features and the champion model."""
