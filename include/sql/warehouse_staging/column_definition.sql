{column} {type}
