-- sqlaudit.ddl.grant_audit_read() on a sealed log: SELECT on the seal table too,
-- so the account can verify the chain.
GRANT SELECT ON {{ seal_table }} TO {{ grantee }}
