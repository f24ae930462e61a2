ALTER DATABASE {database} SET pgaudit.log = %(value)s
