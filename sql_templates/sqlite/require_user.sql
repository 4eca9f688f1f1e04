-- Fail-closed mode of one table (require_user_id): an audit row of this table
-- without a user aborts the write. sqlaudit's connections stamp the user first
-- (their TEMP trigger fires before this one), so only writes with no known user
-- reach this check. Installed and removed with the table's own triggers, so it
-- holds whatever process later prunes or installs other tables.
DROP TRIGGER IF EXISTS {{ require_trigger }}
-- sqlaudit:statement
CREATE TRIGGER {{ require_trigger }} BEFORE INSERT ON {{ audit_table }} {{ fingerprint }}
WHEN NEW.changed_by IS NULL AND NEW.table_name = {{ table_literal }} AND NEW.table_schema IS NULL
BEGIN
    SELECT RAISE(ABORT, {{ message }});
END
