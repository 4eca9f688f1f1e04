-- Bind the function to the table: drop-and-create, so installing twice never doubles records.
-- The same four triggers go on each partition and inheritance child of a tracked
-- table, running the tracked table's function: writes made directly to them fire
-- only their own statement triggers, and are recorded under the tracked table.
DROP TRIGGER IF EXISTS sqlaudit_insert ON {{ table }}
-- sqlaudit:statement
CREATE TRIGGER sqlaudit_insert AFTER INSERT ON {{ table }}
    REFERENCING NEW TABLE AS sqlaudit_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {{ function_name }}()
-- sqlaudit:statement
DROP TRIGGER IF EXISTS sqlaudit_update ON {{ table }}
-- sqlaudit:statement
CREATE TRIGGER sqlaudit_update AFTER UPDATE ON {{ table }}
    REFERENCING OLD TABLE AS sqlaudit_old_rows NEW TABLE AS sqlaudit_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {{ function_name }}()
-- sqlaudit:statement
DROP TRIGGER IF EXISTS sqlaudit_delete ON {{ table }}
-- sqlaudit:statement
CREATE TRIGGER sqlaudit_delete AFTER DELETE ON {{ table }}
    REFERENCING OLD TABLE AS sqlaudit_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {{ function_name }}()
-- sqlaudit:statement
DROP TRIGGER IF EXISTS sqlaudit_truncate ON {{ table }}
-- sqlaudit:statement
CREATE TRIGGER sqlaudit_truncate AFTER TRUNCATE ON {{ table }}
    FOR EACH STATEMENT EXECUTE FUNCTION {{ function_name }}()
