-- The newest position of the charge fact: the end of this run's window.
SELECT coalesce(max(source_commit_lsn), -1) FROM marts.fct_charge;
