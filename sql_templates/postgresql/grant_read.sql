-- sqlaudit.ddl.grant_audit_read(): let a role read the history, nothing more.
GRANT USAGE ON SCHEMA {{ audit_schema }} TO {{ role }}
-- sqlaudit:statement
GRANT SELECT ON {{ audit_table }} TO {{ role }}
