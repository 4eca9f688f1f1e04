-- Per-connection objects of sqlaudit's own connections (TEMP: invisible to
-- every other connection). The context row holds the acting user of the
-- current transaction; the TEMP trigger re-inserts each audit row written by
-- this connection with the user stamped and drops the unstamped original.
-- Writes from other connections never see these objects and stay unstamped.
-- The context column is stamped only when the audit table has it (a log made
-- by an older sqlaudit gets it when triggers are next installed).
-- The trigger gets a new name each time it is (re)created: a TEMP trigger on a
-- table that another connection dropped can linger as an undroppable entry.
DROP TRIGGER IF EXISTS temp.{{ old_stamp_trigger }}
-- sqlaudit:statement
CREATE TEMP TABLE IF NOT EXISTS sqlaudit_context (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    user_id TEXT,
    reason TEXT,
    context TEXT,
    transaction_id INTEGER NOT NULL
)
-- sqlaudit:statement
CREATE TEMP TRIGGER {{ stamp_trigger }} BEFORE INSERT ON main.{{ audit_table }}
WHEN NEW.transaction_id IS NULL AND EXISTS (SELECT 1 FROM temp.sqlaudit_context)
    -- The INSERT below cannot name main (SQLite forbids qualified names there), so a
    -- TEMP sqlaudit_log of this connection would capture it: then do not stamp, and
    -- the row goes to the real log without a user (refused where fail-closed).
    AND NOT EXISTS (SELECT 1 FROM temp.sqlite_master WHERE type = 'table' AND name = 'sqlaudit_log')
BEGIN
    -- VALUES with one scalar subquery per context column: about half the cost
    -- of INSERT ... SELECT FROM the context (ad-hoc A/B on 20,000-row
    -- statements). What stamping costs now is the benchmark's "cost of passing
    -- the actor" column (docs/benchmarks.md), which moves with the machine.
    INSERT INTO {{ audit_table }} (
        table_schema, table_name, resource_id, operation, changed_at,
        changed_by, db_role, transaction_id, reason, old_data, new_data{{ context_column }})
    VALUES (
        NEW.table_schema, NEW.table_name, NEW.resource_id, NEW.operation, NEW.changed_at,
        (SELECT user_id FROM temp.sqlaudit_context), NEW.db_role,
        (SELECT transaction_id FROM temp.sqlaudit_context),
        (SELECT reason FROM temp.sqlaudit_context), NEW.old_data, NEW.new_data{{ context_value }});
    SELECT RAISE(IGNORE);
END
