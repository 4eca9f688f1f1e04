-- The second half of partition_move.sql (after the new partitions exist).
INSERT INTO {{ audit_table }} ({{ columns }}) SELECT {{ columns }} FROM {{ aside }}
-- sqlaudit:statement
DROP TABLE {{ aside }}
