-- Releases the lock of seal_lock.sql (after the transaction that took it ended).
SELECT RELEASE_LOCK(:name)
