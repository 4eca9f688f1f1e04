-- sqlaudit.ddl.create_audit_log(partition_by=...) / maintain_audit_partitions():
-- one range partition of the audit table, on changed_at (half-open: FROM <= t < TO).
-- Its row guards (sqlaudit_append_only) are cloned from the parent by PostgreSQL;
-- partition_protect.sql adds the TRUNCATE guard, which PostgreSQL does not clone.
CREATE TABLE {{ partition }} PARTITION OF {{ audit_table }}
    FOR VALUES FROM ({{ start }}) TO ({{ end }})
