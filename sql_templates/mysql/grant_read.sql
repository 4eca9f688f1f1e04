-- sqlaudit.ddl.grant_audit_read(): let an account or role read the history,
-- nothing more: SELECT on the log, no other privilege, no other table.
GRANT SELECT ON {{ audit_table }} TO {{ grantee }}
