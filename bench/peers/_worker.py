"""Shared by the peer workers: read the job, make the engine, run the rounds, print JSON.

A worker runs under its peer's own virtualenv (bench/.venvs/NAME); the job comes
as one JSON argument from bench/run.py, the result goes to stdout as one JSON
line, progress goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from typing import Any, Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harness  # noqa: E402  (bench/harness.py)

warnings.filterwarnings("ignore")


def job() -> Dict[str, Any]:
    return json.loads(sys.argv[1])


def versioned_items(Base: Any) -> "tuple[type, type]":
    """The baseline table and the ``__versioned__`` table (postgresql-audit and
    SQLAlchemy-Continuum both version a model that sets it), on the peer's Base."""
    baseline = type("ItemBaseline", (harness.ItemColumns, Base), {"__tablename__": "items_baseline"})
    item = type("Item", (harness.ItemColumns, Base),
                {"__tablename__": "items_peer", "__versioned__": {}})
    return baseline, item


class PeerSystem(harness.PlainSystem):
    """A peer library's table: same statements and ORM transactions as the baseline,
    with the peer doing its auditing. ``count_sql`` counts (rows, rows with an actor)
    of the peer's audit table; ``reset_sql`` empties it."""

    def __init__(self, name: str, engine: Any, cls: type, dialect: str, count_sql: str,
                 reset_sql: List[str], session_factory: Optional[Callable[[], Any]] = None):
        super().__init__(name, engine, cls, dialect)
        self.count_sql, self.reset_sql = count_sql, reset_sql
        if session_factory is not None:
            self.Session = session_factory

    def _in_session(self, sql: str, **params: Any) -> None:
        # Raw SQL the way an ORM application runs it: through its Session.
        with self.Session() as session:
            session.execute(harness.text(sql), params)
            session.commit()

    def bulk_insert(self, lo: int, hi: int) -> None:
        self._in_session(harness.bulk_insert_sql(self.dialect, self.table), lo=lo, hi=hi)

    def bulk_update(self) -> None:
        self._in_session(harness.bulk_update_sql(self.table, self.dialect))

    def bulk_delete(self) -> None:
        self._in_session(harness.bulk_delete_sql(self.table))

    def delete_above(self, n: int) -> None:
        self._in_session(f"DELETE FROM {self.table} WHERE id > :n", n=n)

    def count_audit(self) -> "tuple[int, int]":
        with self.engine.connect() as conn:
            row = conn.execute(harness.text(self.count_sql)).one()
        return int(row[0]), int(row[1] or 0)

    def reset(self) -> None:
        super().reset()
        with self.engine.begin() as conn:
            for sql in self.reset_sql:
                conn.execute(harness.text(sql))


def run(cfg: Dict[str, Any], systems: List[harness.System], info: Dict[str, Any],
        reads: Optional[Callable[[], Dict[str, Dict[str, Callable[[int], int]]]]] = None) -> None:
    label = f"{cfg['peer']:<17} {cfg['dialect']:<10} "
    for s in systems:  # only the peer's ORM workloads may be cut short by the time budget
        if isinstance(s, PeerSystem):
            s.budget = cfg.get("oltp_budget")
    result: Dict[str, Any] = {"peer": cfg["peer"], "dialect": cfg["dialect"], "info": info}
    try:
        result["write"] = harness.run_write_rounds(
            systems, rows=cfg["rows"], transactions=cfg["transactions"], rounds=cfg["rounds"],
            label=label)
        if reads is not None and cfg.get("audit_records"):
            harness.progress(f"{label}generating {cfg['audit_records']:,} audit records")
            queries = reads()
            result["read"] = harness.run_read_rounds(
                queries, rounds=cfg["read_rounds"], calls=cfg["read_calls"], label=label)
    except Exception as exc:  # report what failed; the parent shows it in the table
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        traceback.print_exc(file=sys.stderr)
    finally:
        for s in systems:
            s.close()
    harness.emit(result)
