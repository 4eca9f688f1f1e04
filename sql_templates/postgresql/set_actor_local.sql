-- The same stamp as set_actor.sql, for psycopg 3 connections, where sqlaudit's
-- connection hook sends it in the same message as the transaction's BEGIN.
-- SET LOCAL is a utility statement: no planning, no snapshot and no result row:
-- 20-30 us per ORM transaction less than the SELECT in an ad-hoc A/B (30-40
-- interleaved blocks of 100 transactions per variant). It takes no bind
-- parameters, so the values arrive here already quoted by psycopg (libpq's
-- escaping, for the connection's encoding and standard_conforming_strings).
SET LOCAL sqlaudit.user_id = {{ user_id }}
-- sqlaudit:statement
SET LOCAL sqlaudit.reason = {{ reason }}
-- sqlaudit:statement
SET LOCAL sqlaudit.context = {{ context }}
