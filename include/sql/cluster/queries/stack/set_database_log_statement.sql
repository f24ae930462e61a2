ALTER DATABASE {database} SET log_statement = %(value)s
