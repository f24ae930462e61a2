-- Per login user and database: a session's role settings come from its login role only.
ALTER ROLE {role} IN DATABASE {database} SET log_statement = %(value)s
