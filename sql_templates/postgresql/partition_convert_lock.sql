-- partition_audit_log(): one conversion of a schema's log at a time. A session
-- lock (the first phase runs in autocommit, so a transaction lock would not
-- last), taken before the first phase and released after the swap; a second
-- conversion waits, then finds the log partitioned and does nothing. It waits by
-- polling pg_try_advisory_lock between short pauses, never inside one long
-- statement: the first conversion's CREATE INDEX CONCURRENTLY waits for every
-- transaction older than it to end, a blocked pg_advisory_lock call included.
SELECT pg_try_advisory_lock(hashtext('sqlaudit.partition_convert'), hashtext({{ schema_literal }}))
-- sqlaudit:statement
SELECT pg_advisory_unlock(hashtext('sqlaudit.partition_convert'), hashtext({{ schema_literal }}))
