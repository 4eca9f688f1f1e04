-- Serialises seal_audit_log() and prune_audit_log() on one schema's audit log
-- before either asks whether the log was ever sealed (transaction-scoped:
-- released at COMMIT or ROLLBACK). Writers of the log never take it. Taken
-- after the partition lock (partition_lock.sql), as every path does.
SELECT pg_advisory_xact_lock(hashtext('sqlaudit.seal'), hashtext(:schema))
