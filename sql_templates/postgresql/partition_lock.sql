-- Serialises maintain_audit_partitions(), partitioned prunes and conversions on
-- one schema's audit log (transaction-scoped: released at COMMIT or ROLLBACK).
-- Always the first lock of those runs, before any lock on the log itself (a
-- prune takes it before sealing): whoever holds it may wait for the log, but
-- nobody holding a lock on the log waits for it, so they cannot deadlock.
SELECT pg_advisory_xact_lock(hashtext('sqlaudit.partitions'), hashtext({{ schema_literal }}))
-- sqlaudit:statement
-- Partition DDL needs ACCESS EXCLUSIVE on the parent: taken first, so waiting
-- never turns into a lock upgrade (writers queue for the short DDL, then go on).
LOCK TABLE {{ audit_table }} IN ACCESS EXCLUSIVE MODE
