-- The horizon of a seal (sqlaudit.integrity, READ COMMITTED): the highest
-- committed id, and the last id of the run of consecutive committed ids after
-- the previous seal's head. An id missing from that run belongs to a
-- transaction still in flight or to one rolled back.
SELECT max(id) FROM {{ log }} WHERE id > :head
-- sqlaudit:statement
SELECT max(id) FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM {{ log }}
                     WHERE id > :head AND id <= :last) AS r
WHERE id = :head + n
-- sqlaudit:statement
-- Whether a transaction still in flight holds a row between the end of that
-- run and the highest committed id: a locking read waits for an uncommitted
-- row, NOWAIT makes it fail at once instead (no gap locks under READ
-- COMMITTED, so writers are never blocked; the shared locks on committed rows
-- last until the seal commits).
SELECT count(*) FROM {{ log }} WHERE id > :low AND id <= :high LOCK IN SHARE MODE NOWAIT
