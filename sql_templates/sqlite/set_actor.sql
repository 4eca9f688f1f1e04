-- Run by sqlaudit's connection hook once per transaction, before its first
-- statement. Inserts nothing (rowcount 0) when the TEMP stamp trigger is
-- missing, which tells the hook to (re)create the context objects first.
INSERT OR REPLACE INTO temp.sqlaudit_context (id, user_id, reason, context, transaction_id)
SELECT 1, :user_id, :reason, :context, :transaction_id
WHERE EXISTS (SELECT 1 FROM temp.sqlite_master WHERE type = 'trigger' AND name = :stamp_trigger)
