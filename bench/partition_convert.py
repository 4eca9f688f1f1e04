"""How long partition_audit_log() makes writers wait, on a log of --rows records.

    python bench/partition_convert.py [--rows 3000000] [--writers 4] [--by month]

Fills a plain ``sqlaudit_log`` (INSERT ... SELECT over generate_series, the
JSON shape of bench/seal.py) in a fresh schema, with a tracked table whose
triggers write to it. Then ``--writers`` threads commit one-row ORM inserts in
a loop (each audited through the log) while ``partition_audit_log`` converts
the log; each commit's latency is recorded with its start time. Prints the
time of each phase (prepare: CHECK + VALIDATE + unique index built
CONCURRENTLY; swap: the one exclusive transaction), then times a
``maintain_audit_partitions(ahead=12)`` that creates partitions while the
writers go on. Prints the writers' latency percentiles and maximum before,
during the prepare phase, around the swap and around maintain, and checks
afterwards that every committed write is recorded exactly once.
PostgreSQL from ``SQLAUDIT_BENCH_POSTGRES_URL`` (default
postgresql+psycopg://postgres@127.0.0.1:5432/test); the schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import Integer, String, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlaudit import _partitions  # noqa: E402
from sqlaudit.ddl import maintain_audit_partitions, partition_audit_log  # noqa: E402
from sqlaudit.decorators import track_table  # noqa: E402

FILL = """
INSERT INTO sqlaudit_log (table_name, resource_id, operation, changed_at, changed_by,
                          db_role, transaction_id, reason, old_data, new_data)
SELECT 'customers', g::text, CASE WHEN g % 3 = 0 THEN 'update' ELSE 'insert' END,
       now() - interval '300 days' + g * (interval '299 days' / :rows), 'user-' || (g % 50),
       'app', 1000 + g / 10, NULL,
       CASE WHEN g % 3 = 0 THEN jsonb_build_object('name', 'customer ' || (g - 1), 'qty', g % 97) END,
       jsonb_build_object('name', 'customer ' || g, 'qty', g % 100, 'price', round((g % 1000) / 7.0, 2),
                          'updated_at', '2024-01-01T00:00:00', 'active', g % 2 = 0)
FROM generate_series(:low, :high) AS g
"""


class Base(DeclarativeBase):
    pass


@track_table(tracked_fields=["name"])
class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--by", default="month")
    args = parser.parse_args()
    url = os.environ.get("SQLAUDIT_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = f"sqlaudit_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(url, connect_args={"options": f"-csearch_path={schema}"},
                           pool_size=args.writers + 2)
    try:
        Base.metadata.create_all(engine)
        started = time.perf_counter()
        step = 1_000_000
        for low in range(1, args.rows + 1, step):
            with engine.begin() as conn:
                conn.execute(text(FILL), {"rows": args.rows, "low": low,
                                          "high": min(args.rows, low + step - 1)})
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text("VACUUM ANALYZE sqlaudit_log"))
            size = conn.execute(text("SELECT pg_size_pretty(pg_total_relation_size('sqlaudit_log'))")).scalar()
        print(f"filled {args.rows:,} records ({size}, with indexes) in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)

        stop = threading.Event()
        samples: list[tuple[float, float]] = []  # (start, latency)
        committed: list[int] = []
        lock = threading.Lock()
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            i = 0
            try:
                while not stop.is_set():
                    i += 1
                    key = n * 100_000_000 + i
                    t0 = time.perf_counter()
                    with Session(engine) as s:
                        s.add(Item(id=key, name=f"w{n}"))
                        s.commit()
                    t1 = time.perf_counter()
                    with lock:
                        samples.append((t0, t1 - t0))
                        committed.append(key)
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)

        phases: dict[str, tuple[float, float]] = {}
        prepare, swap = _partitions.prepare, _partitions.swap

        def timed(name, fn):
            def run(*a, **kw):
                t0 = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    phases[name] = (t0, time.perf_counter())
            return run

        _partitions.prepare = timed("prepare", prepare)
        _partitions.swap = timed("swap", swap)
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(args.writers)]
        for t in threads:
            t.start()
        time.sleep(3)
        convert_start = time.perf_counter()
        partition_audit_log(engine, by=args.by)
        convert_end = time.perf_counter()
        time.sleep(1.5)
        maintain_start = time.perf_counter()
        created = maintain_audit_partitions(engine, ahead=12).created
        maintain_end = time.perf_counter()
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors

        def window(a: float, b: float) -> list[float]:
            return [lat for (t0, lat) in samples if t0 + lat >= a and t0 <= b]

        p0, p1 = phases["prepare"]
        s0, s1 = phases["swap"]
        print(f"rows: {args.rows:,}; writers: {args.writers}; by: {args.by}")
        print(f"prepare (CHECK + VALIDATE + CREATE UNIQUE INDEX CONCURRENTLY): {p1 - p0:.2f} s")
        print(f"swap transaction (exclusive lock held): {(s1 - s0) * 1000:.1f} ms")
        print(f"total partition_audit_log(): {convert_end - convert_start:.2f} s")
        print(f"then maintain_audit_partitions(ahead=12) created {len(created)} partitions in "
              f"{(maintain_end - maintain_start) * 1000:.1f} ms")
        for label, values in (("before", window(0, convert_start)),
                              ("during prepare", window(p0, p1)),
                              ("around the swap (commits overlapping it)", window(s0, s1)),
                              ("around maintain", window(maintain_start, maintain_end)),
                              ("after", window(convert_end, float("inf")))):
            if values:
                print(f"writer commit latency {label}: n={len(values)} median={statistics.median(values) * 1000:.1f} ms "
                      f"p99={pct(values, 0.99) * 1000:.1f} ms max={max(values) * 1000:.1f} ms")
        with engine.connect() as conn:
            kind = conn.execute(text("SELECT relkind FROM pg_class WHERE oid = 'sqlaudit_log'::regclass")).scalar()
            recorded = dict(conn.execute(text(
                "SELECT resource_id::bigint, count(*) FROM sqlaudit_log WHERE table_name = 'items' "
                "GROUP BY 1")).all())
            total = conn.execute(text("SELECT count(*), count(DISTINCT id) FROM sqlaudit_log")).one()
        once = all(recorded.get(k) == 1 for k in committed) and len(recorded) == len(committed)
        print(f"log is partitioned: {kind == 'p'}; committed writes: {len(committed)}; each recorded "
              f"exactly once: {once}; records {total[0]:,} (distinct ids {total[1]:,}; "
              f"expected {args.rows + len(committed):,})")
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
