-- Remove the triggers; the audit history stays.
DROP TRIGGER IF EXISTS {{ insert_trigger }}
-- sqlaudit:statement
DROP TRIGGER IF EXISTS {{ update_trigger }}
-- sqlaudit:statement
DROP TRIGGER IF EXISTS {{ delete_trigger }}
