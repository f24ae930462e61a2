-- The fraud scoring job connects as `ml` (docs/security.md, *Which role each job connects as*): it
-- writes its two marts tables, and no other marts table; they are created by the migrate step, so
-- the grants are named-table rows applied now and again after the definitions.
INSERT INTO security.table_grant (role_name, schema_name, table_name, privileges) VALUES
    ('ml', 'marts', 'fct_fraud_score', 'SELECT, INSERT, UPDATE, DELETE'),
    ('ml', 'marts', 'fraud_score_state', 'SELECT, INSERT, UPDATE, DELETE');
SELECT security.apply_table_grants();
