-- Run just before COMMIT so the user never outlives its transaction.
DELETE FROM temp.sqlaudit_context
