"""Change data capture: decoding PostgreSQL logical replication (pgoutput) into typed changes."""
