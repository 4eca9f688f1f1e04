-- Run by sqlaudit's connection hook once per transaction, before its first statement.
SELECT set_config('sqlaudit.user_id', :user_id, true), set_config('sqlaudit.reason', :reason, true),
       set_config('sqlaudit.context', :context, true)
