{column} = CASE WHEN {column_name} = ANY (b._unchanged) THEN m.{column} ELSE b.{column} END
