GRANT {group} TO {member}
