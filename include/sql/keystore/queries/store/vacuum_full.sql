VACUUM (FULL) {table}
