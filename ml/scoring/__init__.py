"""Scores back to the warehouse: the batch client of the scoring API and ``marts.fct_fraud_score``."""
