{column} = %s
