-- Run by sqlaudit when a connection goes back to the pool: a row here means a
-- commit made behind SQLAlchemy's back kept a user in the connection's TEMP
-- context, and clear_actor.sql removes it before anyone else gets the connection.
-- A read of the TEMP database only: it opens no transaction and takes no lock.
SELECT 1 FROM temp.sqlaudit_context
