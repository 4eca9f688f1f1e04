-- Serialises seal_audit_log() and prune_audit_log() on one database's audit log
-- before either asks whether the log was ever sealed. A user-level lock of the
-- session (MariaDB and MySQL have no transaction-scoped one): sqlaudit releases
-- it (seal_unlock.sql) once the transaction that took it has ended, at the next
-- BEGIN on the connection or when it returns to the pool; the server releases
-- it when the session ends. Waits up to the session's lock_wait_timeout; returns
-- 1 once held, 0 on timeout. Writers of the log never take it.
SELECT GET_LOCK(:name, @@lock_wait_timeout)
