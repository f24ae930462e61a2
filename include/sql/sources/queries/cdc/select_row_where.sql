SELECT {columns} FROM {table} WHERE {condition}
