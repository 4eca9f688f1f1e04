-- Remove the triggers and the function; the audit history stays.
DROP TRIGGER IF EXISTS sqlaudit_insert ON {{ table }}
-- sqlaudit:statement
DROP TRIGGER IF EXISTS sqlaudit_update ON {{ table }}
-- sqlaudit:statement
DROP TRIGGER IF EXISTS sqlaudit_delete ON {{ table }}
-- sqlaudit:statement
DROP TRIGGER IF EXISTS sqlaudit_truncate ON {{ table }}
-- sqlaudit:statement
-- CASCADE: the same triggers on the table's partitions and inheritance children go too.
DROP FUNCTION IF EXISTS {{ function_name }}() CASCADE
