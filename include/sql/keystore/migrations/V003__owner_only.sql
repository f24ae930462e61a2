-- The key store is its owner's alone (docs/security.md, *Key custody*): no role of the matrix is
-- granted anything here, CONNECT is revoked from PUBLIC by the stack and pg_hba.conf admits only
-- the owner. Spelled out, so that a default privilege added later cannot open a table silently.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
