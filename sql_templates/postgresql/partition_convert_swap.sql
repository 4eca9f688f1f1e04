-- partition_audit_log(), second phase: one short transaction holding ACCESS
-- EXCLUSIVE on the log (taken by partition_lock.sql). Catalog changes only, no
-- row is read or written: the plain log takes the primary key (id, changed_at)
-- from the index built in the first phase, hands its own row guard to the new
-- parent (the parent's is cloned onto it when attached), and is renamed; the
-- partitioned parent is created (create_statements, reusing the log's id
-- sequence), then the old log is attached as the partition of every time before
-- the boundary; the validated CHECK constraint spares the scan and the matching
-- indexes are attached, not rebuilt. Writers wait for this transaction only.
ALTER TABLE {{ audit_table }} DROP CONSTRAINT {{ pk_name }}
-- sqlaudit:statement
ALTER TABLE {{ audit_table }} ADD CONSTRAINT {{ history_pkey }} PRIMARY KEY USING INDEX {{ key_index }}
-- sqlaudit:statement
DROP TRIGGER IF EXISTS sqlaudit_append_only ON {{ audit_table }}
-- sqlaudit:statement
ALTER TABLE {{ audit_table }} RENAME TO {{ history_name }}
