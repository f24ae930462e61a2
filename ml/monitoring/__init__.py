"""Monitoring of the fraud model: settings (``config``, ``monitoring.yaml``), the frames compared
(``data``), the champion's scores (``scores``), drift (``drift``), matured performance
(``performance``), the decision (``decision``), the warehouse record (``store``), one pass
(``run``) and the DAG's steps (``jobs``)."""
