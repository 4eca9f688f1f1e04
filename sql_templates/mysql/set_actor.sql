-- Run by sqlaudit's connection hook before the first statement of each
-- transaction. User variables live as long as the session, so clear_actor.sql
-- runs at COMMIT, ROLLBACK and when the connection returns to the pool.
SET @sqlaudit_user_id = :user_id, @sqlaudit_reason = :reason,
    @sqlaudit_context = :context, @sqlaudit_transaction_id = :transaction_id
