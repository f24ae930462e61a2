-- Stored scores of one model version for the given charges ({table} and columns from the settings).
SELECT {charge_column}, {score_column}
FROM {table}
WHERE {version_column}::text = %(model_version)s AND {charge_column} = ANY (%(charge_ids)s);
