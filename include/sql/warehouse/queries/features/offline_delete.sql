-- A rebuild of the offline table starts empty (the event ledgers keep their first-seen positions).
TRUNCATE {table};
