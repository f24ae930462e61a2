-- Is there a key destroyed after the table's last rewrite started (its bytes may still be in the file)?
SELECT EXISTS (
    SELECT 1 FROM key_destruction d
    WHERE d.owner_table = %(owner_table)s
      AND d.destroyed_lsn >= COALESCE(
          (SELECT max(started_lsn) FROM key_table_compaction WHERE table_name = %(table_name)s), '0/0')
)
