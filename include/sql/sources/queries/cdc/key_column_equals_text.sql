{column} = CAST(%s AS {type})
