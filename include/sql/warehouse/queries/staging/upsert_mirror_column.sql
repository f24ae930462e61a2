{column} = EXCLUDED.{column}
