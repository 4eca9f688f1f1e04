-- The acting user never outlives its transaction: run at COMMIT and ROLLBACK
-- (and for raw COMMIT/ROLLBACK sent as SQL text) and when a connection that
-- was stamped returns to the pool, so neither the next transaction nor other
-- code on a reused connection is credited to an earlier user.
SET @sqlaudit_user_id = NULL, @sqlaudit_reason = NULL,
    @sqlaudit_context = NULL, @sqlaudit_transaction_id = NULL
