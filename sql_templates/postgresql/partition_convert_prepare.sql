-- sqlaudit.ddl.partition_audit_log() / op.partition_audit_log(), first phase, run
-- in autocommit mode while the application keeps writing. A plain log becomes
-- the first partition of the new layout as it is (no row is copied), so it
-- must prove two things PostgreSQL would otherwise check under an exclusive lock:
-- every row is before the boundary (a validated CHECK constraint: NOT VALID is
-- instant and already binds new rows; VALIDATE scans under SHARE UPDATE EXCLUSIVE,
-- which writers do not wait for), and (id, changed_at) is unique (an index
-- built CONCURRENTLY, to become the partition's primary key).
ALTER TABLE {{ audit_table }} DROP CONSTRAINT IF EXISTS {{ check_name }}
-- sqlaudit:statement
ALTER TABLE {{ audit_table }} ADD CONSTRAINT {{ check_name }} CHECK (changed_at < {{ boundary }}) NOT VALID
-- sqlaudit:statement
ALTER TABLE {{ audit_table }} VALIDATE CONSTRAINT {{ check_name }}
-- sqlaudit:statement
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {{ key_index }} ON {{ audit_table }} (id, changed_at)
