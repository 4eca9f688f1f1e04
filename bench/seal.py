"""How long sealing and verifying sqlaudit_log takes (sqlaudit.integrity), per dialect.

    python bench/seal.py [--rows 1000000] [--rounds 3] [--dialects postgresql,sqlite,mariadb]

Fills a fresh ``sqlaudit_log`` with ``--rows`` records (INSERT ... SELECT over
generate_series on PostgreSQL, a recursive CTE on SQLite and MariaDB), with JSON shaped like
what the triggers write for a 5-column table. Then, per round, drops
``sqlaudit_seal`` and times ``seal_audit_log`` (everything from scratch) and
``verify_audit_log``; prints the median and every round. PostgreSQL comes from
``SQLAUDIT_BENCH_POSTGRES_URL`` (default postgresql+psycopg://postgres@127.0.0.1:5432/test);
a fresh schema is created and dropped. MariaDB comes from
``SQLAUDIT_BENCH_MARIADB_URL`` (default mysql+pymysql://root@127.0.0.1:3306/test);
a fresh database is created and dropped.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sqlite3
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import MetaData, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # ours.py, beside this file

from sqlaudit import seal_audit_log, verify_audit_log  # noqa: E402
from sqlaudit.ddl import _protect  # noqa: E402
from sqlaudit.schema import audit_table  # noqa: E402

PG_FILL = """
INSERT INTO sqlaudit_log (table_name, resource_id, operation, changed_at, changed_by,
                          db_role, transaction_id, reason, old_data, new_data)
SELECT 'customers', g::text, CASE WHEN g % 3 = 0 THEN 'update' ELSE 'insert' END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', 'user-' || (g % 50),
       'app', 1000 + g / 10, NULL,
       CASE WHEN g % 3 = 0 THEN jsonb_build_object('name', 'customer ' || (g - 1), 'qty', g % 97) END,
       jsonb_build_object('name', 'customer ' || g, 'qty', g % 100, 'price', round((g % 1000) / 7.0, 2),
                          'updated_at', '2024-01-01T00:00:00', 'active', g % 2 = 0)
FROM generate_series(1, :rows) AS g
"""

SQLITE_FILL = """
WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :rows)
INSERT INTO sqlaudit_log (table_name, resource_id, operation, changed_at, changed_by,
                          db_role, transaction_id, reason, old_data, new_data)
SELECT 'customers', CAST(g AS TEXT), CASE WHEN g % 3 = 0 THEN 'update' ELSE 'insert' END,
       strftime('%Y-%m-%d %H:%M:%f', '2024-01-01', '+' || g || ' seconds') || '000',
       'user-' || (g % 50), NULL, 1000 + g / 10, NULL,
       CASE WHEN g % 3 = 0 THEN json_object('name', 'customer ' || (g - 1), 'qty', g % 97) END,
       json_object('name', 'customer ' || g, 'qty', g % 100,
                   'price', json_object('$r', printf('%!.20e', (g % 1000) / 7.0)),
                   'updated_at', '2024-01-01 00:00:00.000000', 'active', g % 2 = 0)
FROM s
"""

# MariaDB: JSON_OBJECT as the triggers write it (a DECIMAL as its text); 10,000 rows per
# statement (a recursive CTE of 100 steps crossed with itself), from :offset on.
MARIADB_FILL = """
INSERT INTO sqlaudit_log (table_name, resource_id, operation, changed_at, changed_by,
                          db_role, transaction_id, reason, old_data, new_data)
WITH RECURSIVE k(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM k WHERE n < 99),
     s(g) AS (SELECT :offset + a.n * 100 + b.n + 1 FROM k AS a CROSS JOIN k AS b)
SELECT 'customers', CAST(g AS CHAR), CASE WHEN g % 3 = 0 THEN 'update' ELSE 'insert' END,
       TIMESTAMP'2024-01-01 00:00:00' + INTERVAL g SECOND, CONCAT('user-', g % 50),
       'app', 1000 + g DIV 10, NULL,
       CASE WHEN g % 3 = 0 THEN JSON_OBJECT('name', CONCAT('customer ', g - 1), 'qty', g % 97) END,
       JSON_OBJECT('name', CONCAT('customer ', g), 'qty', g % 100,
                   'price', CAST(CAST((g % 1000) / 7.0 AS DECIMAL(10, 2)) AS CHAR),
                   'updated_at', '2024-01-01 00:00:00.000000', 'active', g % 2 = 0)
FROM s WHERE g <= :rows ORDER BY g
"""
MARIADB_STEP = 10_000


def dialect_of(engine) -> str:
    return "mariadb" if engine.dialect.name in ("mysql", "mariadb") else engine.dialect.name


def _version(engine) -> str:
    with engine.connect() as conn:
        if dialect_of(engine) == "sqlite":
            return "SQLite " + sqlite3.sqlite_version
        if dialect_of(engine) == "mariadb":
            return "MariaDB " + str(conn.execute(text("SELECT VERSION()")).scalar()).split("-")[0]
        return str(conn.execute(text("SHOW server_version")).scalar()).split()[0].join(("PostgreSQL ", ""))


def run(dialect: str, rows: int, rounds: int, url: "str | None" = None) -> dict:
    """Fill, then time ``rounds`` seals and verifies on a fresh database (ours.Database:
    a PostgreSQL schema, a MariaDB database or a SQLite file, all removed afterwards);
    return the timings. ``url``: the PostgreSQL or MariaDB server's."""
    import ours

    db = ours.Database(
        dialect,
        postgres_url=url or os.environ.get("SQLAUDIT_BENCH_POSTGRES_URL") or None,
        mariadb_url=url or os.environ.get("SQLAUDIT_BENCH_MARIADB_URL") or None)
    engine = db.engine()
    try:
        metadata = MetaData()
        with engine.begin() as conn:
            audit_table(metadata).create(conn)
            _protect(conn, metadata)
        started = time.perf_counter()
        with engine.begin() as conn:
            if dialect == "mariadb":
                for offset in range(0, rows, MARIADB_STEP):
                    conn.execute(text(MARIADB_FILL), {"rows": rows, "offset": offset})
            else:
                fill_sql = PG_FILL if dialect == "postgresql" else SQLITE_FILL
                conn.execute(text(fill_sql), {"rows": rows})
        if dialect == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE sqlaudit_log"))
        fill = time.perf_counter() - started
        seals, verifies = [], []
        for n in range(rounds):
            with engine.begin() as conn:
                conn.execute(text("DROP TABLE IF EXISTS sqlaudit_seal"))
            t0 = time.perf_counter()
            head = seal_audit_log(engine)
            t1 = time.perf_counter()
            result = verify_audit_log(engine, head=head)
            t2 = time.perf_counter()
            assert result.ok and result.sealed_rows == rows, result.problems
            seals.append(t1 - t0)
            verifies.append(t2 - t1)
            print(f"  {dialect} round {n + 1}: seal {t1 - t0:.2f} s, verify {t2 - t1:.2f} s",
                  file=sys.stderr)
        return {"dialect": dialect, "version": _version(engine), "fill": fill,
                "seal": seals, "verify": verifies}
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dialects", default="postgresql,sqlite")
    args = parser.parse_args()
    print("$ python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(f"machine: {os.cpu_count()} CPUs (nproc), {platform.platform()}, Python {platform.python_version()}")
    for dialect in args.dialects.split(","):
        r = run(dialect, args.rows, args.rounds)
        med = statistics.median
        print(f"{r['version']}: {args.rows:,} rows (filled in {r['fill']:.1f} s); "
              f"seal median {med(r['seal']):.2f} s, verify median {med(r['verify']):.2f} s "
              f"({args.rounds} rounds; seal {', '.join(f'{x:.2f}' for x in r['seal'])}; "
              f"verify {', '.join(f'{x:.2f}' for x in r['verify'])})")


if __name__ == "__main__":
    main()
