-- Recreate the indexes security.begin_full_rebuild() dropped, from the definitions it kept.
SELECT security.recreate_rebuild_indexes()
