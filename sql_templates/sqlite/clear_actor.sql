-- Deletes the connection's context row so the user never outlives its
-- transaction. Run before every commit sqlaudit sees (the Connection's commit,
-- a raw COMMIT, END or RELEASE sent as text), after a failed stamp (so the
-- write is not credited to the previous user), before a write in AUTOCOMMIT
-- mode, and when a connection returns to the pool holding a row.
DELETE FROM temp.sqlaudit_context
