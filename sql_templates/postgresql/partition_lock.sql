-- Serialises maintain_audit_partitions(), partitioned prunes, seals and
-- conversions on one schema's audit log (transaction-scoped: released at COMMIT
-- or ROLLBACK). Every path that also takes the seal lock takes this one first.
-- maintain and the conversion take it inside a savepoint with lock_timeout
-- set, so an attempt that times out or is chosen as a deadlock victim is undone
-- with this lock and retried.
SELECT pg_advisory_xact_lock(hashtext('sqlaudit.partitions'), hashtext({{ schema_literal }}))
-- sqlaudit:statement
-- Partition DDL needs ACCESS EXCLUSIVE on the parent: taken first, so waiting
-- never turns into a lock upgrade (writers queue for the short DDL, then go on).
LOCK TABLE {{ audit_table }} IN ACCESS EXCLUSIVE MODE
