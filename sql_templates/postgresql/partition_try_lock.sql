-- The same lock as partition_lock.sql's first statement, asked for without
-- waiting: seal_audit_log() and prune_audit_log() ask again after a pause
-- until they hold it. Their transaction may already hold a lock on the log (a
-- caller's transaction that wrote to it), and a maintain holding this lock may
-- be waiting for the log: by never waiting inside the server for this lock they
-- cannot close that cycle, and maintain's attempt times out, is undone with the
-- lock it held, and lets them through.
SELECT pg_try_advisory_xact_lock(hashtext('sqlaudit.partitions'), hashtext({{ schema_literal }}))
