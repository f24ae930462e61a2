"""Training of the fraud model: the data frame and its time-ordered split (``data``), the analyst's
rules baseline (``baseline``), metrics (``metrics``), the model (``model``) and the MLflow run
(``run``)."""
