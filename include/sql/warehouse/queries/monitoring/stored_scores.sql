-- Stored scores of one model version for the given charges ({table} and columns from the settings),
-- only those sent while the charge was younger than the online horizon (%(max_age)s): an older
-- charge's online features described other windows than the one before it.
SELECT {charge_column}, {score_column}
FROM {table}
WHERE {version_column}::text = %(model_version)s AND {charge_column} = ANY (%(charge_ids)s)
  AND {scored_column} - {created_column} < %(max_age)s;
