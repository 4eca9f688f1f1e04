"""The in-process part of the benchmark: sqlaudit against no auditing and against the limit.

``run_dialect(dialect, ...)`` builds a fresh database (a new PostgreSQL schema,
or a SQLite file in a temporary directory), runs the write workloads in
interleaved rounds for the variants

* ``baseline``   -- no auditing at all;
* ``sqlaudit``   -- this repository's triggers plus ``register_hooks()`` and an acting user;
* ``limit``      -- the baseline statement plus one hand-written ``INSERT ... SELECT``
  writing one minimal audit row per changed row into an indexed table;
* ``sqlaudit_noactor`` (diagnostic) -- the triggers without the hooks, to isolate
  the cost of passing the acting user;
* ``rowtrigger`` (diagnostic) -- a hand-written minimal row-level trigger that
  writes the limit's row (constant actor, full old/new JSON) into its own
  indexed log table: what the per-row trigger mechanism alone costs, the floor
  of any SQLite design (SQLite has only row-level triggers) and the row-level
  alternative to sqlaudit's statement-level triggers on PostgreSQL;
* ``limit_noindex`` (diagnostic) -- the limit writing into a log table with its
  primary key only: what the read indexes cost (a design that keeps no
  index for its queries, postgresql-audit's for one, pays this instead);

then fills the audit tables with ``audit_records`` generated rows and times the two
retrieval queries, and collects the query plans and (PostgreSQL) a per-trigger
profile. Everything is dropped afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence

from sqlalchemy import (
    JSON, BigInteger, Column, DateTime, Index, Integer, String, Table, Text, create_engine, event,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, sessionmaker

import harness
from harness import ACTOR, TRACKED, ItemColumns, System, run_sql, scalar

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LIMIT_LOG = "bench_limit_log"
ROW_LOG = "bench_rowtrigger_log"
VARIANTS = ("baseline", "sqlaudit", "limit")
DIAGNOSTIC = "sqlaudit_noactor"
ROW_TRIGGER = "rowtrigger"
LIMIT_BARE = "limit_noindex"
LIMIT_BARE_LOG = "bench_limit_noindex_log"

warnings.filterwarnings("ignore", message=".*Decimal objects natively.*")


# ------------------------------------------------------------------ models

def build_models() -> Dict[str, Any]:
    """A fresh MetaData with one table per variant and the limit's log table."""
    from sqlaudit.decorators import track_table

    class Base(DeclarativeBase):
        pass

    class ItemBaseline(ItemColumns, Base):
        __tablename__ = "items_baseline"

    @track_table(tracked_fields=list(TRACKED), table_label="Item")
    class ItemAudited(ItemColumns, Base):
        __tablename__ = "items_sqlaudit"

    @track_table(tracked_fields=list(TRACKED), table_label="Item (no actor)")
    class ItemAuditedNoActor(ItemColumns, Base):
        __tablename__ = "items_sqlaudit_noactor"

    class ItemLimit(ItemColumns, Base):
        __tablename__ = "items_limit"

    class ItemRowTrigger(ItemColumns, Base):
        __tablename__ = "items_rowtrigger"

    class ItemLimitBare(ItemColumns, Base):
        __tablename__ = "items_limit_noindex"

    _log_table(Base.metadata, LIMIT_LOG, "limit")
    _log_table(Base.metadata, ROW_LOG, "rowtrigger")
    _log_table(Base.metadata, LIMIT_BARE_LOG, "limitbare", indexes=False)
    return {"Base": Base, "baseline": ItemBaseline, "sqlaudit": ItemAudited,
            DIAGNOSTIC: ItemAuditedNoActor, "limit": ItemLimit, ROW_TRIGGER: ItemRowTrigger,
            LIMIT_BARE: ItemLimitBare}


def _log_table(metadata: Any, name: str, tag: str, indexes: bool = True) -> Table:
    """A minimal audit log with the same four indexes as sqlaudit_log (``indexes=False``:
    its primary key only)."""
    data = JSON().with_variant(JSONB(), "postgresql")
    log = Table(
        name, metadata,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
               autoincrement=True),
        Column("table_name", String(255), nullable=False),
        Column("resource_id", Text),
        Column("operation", String(8), nullable=False),
        Column("changed_at", DateTime(timezone=True), nullable=False),
        Column("changed_by", Text),
        Column("transaction_id", BigInteger),
        Column("old_data", data),
        Column("new_data", data),
    )
    if indexes:
        from sqlaudit.schema import user_prefix  # the expression of sqlaudit's user index

        Index(f"ix_bench_{tag}_resource", log.c.table_name, log.c.resource_id, log.c.changed_at)
        Index(f"ix_bench_{tag}_user", user_prefix(log.c.changed_by), log.c.changed_at)
        Index(f"ix_bench_{tag}_transaction", log.c.transaction_id)
        Index(f"ix_bench_{tag}_changed_at", log.c.changed_at)
    return log


# ------------------------------------------------------------------ databases

class Database:
    """A fresh PostgreSQL schema or SQLite file; ``engine()`` makes engines on it."""

    def __init__(self, dialect: str, postgres_url: Optional[str] = None):
        self.dialect = dialect
        self._engines: List[Any] = []
        if dialect == "postgresql":
            self.url = postgres_url or DEFAULT_POSTGRES_URL
            self.schema = f"sqlaudit_bench_{uuid.uuid4().hex[:10]}"
            self._admin = create_engine(self.url)
            run_sql(self._admin, f'CREATE SCHEMA "{self.schema}"')
        else:
            self._dir = tempfile.mkdtemp(prefix="sqlaudit-bench-")
            self.url = f"sqlite:///{self._dir}/bench.db"
            self.schema = None

    def engine(self) -> Any:
        if self.dialect == "postgresql":
            eng = create_engine(self.url, connect_args={"options": f"-csearch_path={self.schema}"})
        else:
            eng = create_engine(self.url)
        self._engines.append(eng)
        return eng

    def close(self) -> None:
        for eng in self._engines:
            eng.dispose()
        if self.dialect == "postgresql":
            run_sql(self._admin, f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            self._admin.dispose()
        else:
            shutil.rmtree(self._dir, ignore_errors=True)


# ------------------------------------------------------------------ systems

class Plain(harness.PlainSystem):
    """No auditing: the statements and ORM transactions alone."""

    def __init__(self, name: str, db: Database, cls: type):
        super().__init__(name, db.engine(), cls, db.dialect)
        self.db = db


class Audited(Plain):
    """sqlaudit's triggers; with ``actor`` the hooks pass the acting user."""

    def __init__(self, name: str, db: Database, cls: type, actor: bool):
        super().__init__(name, db, cls)
        self.actor = actor

    def before(self, workload: str) -> None:
        from sqlaudit.hooks import register_hooks, unregister_hooks
        (register_hooks if self.actor else unregister_hooks)()

    def after(self, workload: str) -> None:
        from sqlaudit.hooks import unregister_hooks
        unregister_hooks()

    def count_audit(self) -> "tuple[int, int]":
        with self.engine.connect() as conn:
            row = conn.execute(text("SELECT count(*), count(changed_by) FROM sqlaudit_log "
                                    "WHERE table_name = :t"), {"t": self.table}).one()
        return int(row[0]), int(row[1])

    def reset(self) -> None:
        super().reset()
        clear_sqlaudit_log(self.engine, self.pg)


class _OwnLog(Plain):
    """A variant that writes its audit rows into its own log table, ``log``."""

    log = LIMIT_LOG

    def count_audit(self) -> "tuple[int, int]":
        with self.engine.connect() as conn:
            row = conn.execute(text(f"SELECT count(*), count(changed_by) FROM {self.log}")).one()
        return int(row[0]), int(row[1])

    def reset(self) -> None:
        super().reset()
        run_sql(self.engine, f"TRUNCATE {self.log}" if self.pg else f"DELETE FROM {self.log}")


class RowTrigger(_OwnLog):
    """A hand-written minimal row-level trigger per operation (see the module docstring)."""

    log = ROW_LOG

    def __init__(self, name: str, db: Database, cls: type):
        super().__init__(name, db, cls)
        for sql in _row_trigger_ddl(self.table, self.pg):
            with self.engine.begin() as conn:
                conn.exec_driver_sql(sql)



def _row_trigger_ddl(table: str, pg: bool) -> List[str]:
    head = (f"INSERT INTO {ROW_LOG} (table_name, resource_id, operation, changed_at, changed_by, "
            f"old_data, new_data) VALUES ('{table}', ")
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" if pg else f"OLD.{c} IS NOT NEW.{c}"
                          for c in TRACKED)
    if pg:
        body = (f"IF TG_OP = 'INSERT' THEN {head}NEW.id::text, 'insert', now(), '{ACTOR}', NULL, "
                f"{_json('NEW', True)}); "
                f"ELSIF TG_OP = 'UPDATE' THEN {head}NEW.id::text, 'update', now(), '{ACTOR}', "
                f"{_json('OLD', True)}, {_json('NEW', True)}); "
                f"ELSE {head}OLD.id::text, 'delete', now(), '{ACTOR}', {_json('OLD', True)}, NULL); "
                f"END IF; RETURN NULL;")
        return [
            f"CREATE FUNCTION bench_rowtrigger_fn() RETURNS trigger LANGUAGE plpgsql "
            f"AS $$ BEGIN {body} END $$",
            f"CREATE TRIGGER bench_row_ins AFTER INSERT OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION bench_rowtrigger_fn()",
            f"CREATE TRIGGER bench_row_upd AFTER UPDATE ON {table} FOR EACH ROW "
            f"WHEN ({changed}) EXECUTE FUNCTION bench_rowtrigger_fn()",
        ]
    now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    return [
        f"CREATE TRIGGER bench_row_ins AFTER INSERT ON {table} FOR EACH ROW BEGIN "
        f"{head}CAST(NEW.id AS TEXT), 'insert', {now}, '{ACTOR}', NULL, {_json('NEW', False)}); END",
        f"CREATE TRIGGER bench_row_upd AFTER UPDATE ON {table} FOR EACH ROW WHEN {changed} BEGIN "
        f"{head}CAST(NEW.id AS TEXT), 'update', {now}, '{ACTOR}', {_json('OLD', False)}, "
        f"{_json('NEW', False)}); END",
        f"CREATE TRIGGER bench_row_del AFTER DELETE ON {table} FOR EACH ROW BEGIN "
        f"{head}CAST(OLD.id AS TEXT), 'delete', {now}, '{ACTOR}', {_json('OLD', False)}, NULL); END",
    ]


def clear_sqlaudit_log(engine: Any, pg: bool) -> None:
    """Empty the append-only audit table the sanctioned way (prune_audit_log), untimed."""
    from sqlaudit.ddl import prune_audit_log

    if scalar(engine, "SELECT count(*) FROM sqlaudit_log") == 0:
        return
    prune_audit_log(engine, datetime(9000, 1, 1, tzinfo=timezone.utc))
    if pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM sqlaudit_log"))


def _json(alias: str, pg: bool, override: Optional[Dict[str, str]] = None) -> str:
    """JSON object of the five tracked columns (``override`` replaces expressions)."""
    override = override or {}
    fn = "jsonb_build_object" if pg else "json_object"
    parts = [f"'{c}', {override.get(c, f'{alias}.{c}')}" for c in TRACKED]
    return f"{fn}({', '.join(parts)})"


class Limit(_OwnLog):
    """The baseline statement plus one INSERT ... SELECT of minimal audit rows.

    For INSERT the log statement reads the new rows back by key; for UPDATE and
    DELETE it runs first (afterwards the old values are gone) and computes the
    new values with the UPDATE's own expressions. Same transaction, one audit
    row per changed row: old and new JSON of the five tracked columns, actor,
    table, key, time, transaction, into a table with sqlaudit_log's four indexes.
    """

    #: the bulk UPDATE's SET expressions (harness.UPDATE_SET) on alias t
    NEW = {"qty": "t.qty + 1", "name": "t.name || '*'"}

    def __init__(self, name: str, db: Database, cls: type):
        super().__init__(name, db, cls)
        pg = self.pg
        now = "now()" if pg else "strftime('%Y-%m-%d %H:%M:%f', 'now')"
        key = "t.id::text" if pg else "CAST(t.id AS TEXT)"
        head = (f"INSERT INTO {self.log} (table_name, resource_id, operation, changed_at, "
                f"changed_by, old_data, new_data, transaction_id) SELECT '{self.table}', {key}, ")
        # the transaction id, as sqlaudit records it (on SQLite a constant: sqlaudit's is a
        # value its connection stamps)
        tx = "pg_current_xact_id()::text::bigint" if pg else "1"
        tail = f", {tx} FROM {self.table} AS t"
        actor = "CAST(:actor AS TEXT)"
        self.sql_insert = (f"{head}'insert', {now}, {actor}, NULL, {_json('t', pg)} "
                           f"{tail} WHERE t.id BETWEEN :lo AND :hi")
        changed = " OR ".join(f"({e}) IS NOT t.{c}" if not pg else f"({e}) IS DISTINCT FROM t.{c}"
                              for c, e in self.NEW.items())
        self.sql_update = (f"{head}'update', {now}, {actor}, {_json('t', pg)}, "
                           f"{_json('t', pg, self.NEW)}{tail} WHERE {changed}")
        self.sql_delete = (f"{head}'delete', {now}, {actor}, {_json('t', pg)}, NULL "
                           f"{tail}")
        binds = {"name": "CAST(:name AS TEXT)", "qty": "CAST(:qty AS INTEGER)"}
        self.sql_row_update = (f"{head}'update', {now}, {actor}, {_json('t', pg)}, "
                               f"{_json('t', pg, binds)}{tail} WHERE t.id = :id")
        self.sql_row_insert = (f"{head}'insert', {now}, {actor}, NULL, {_json('t', pg)} "
                               f"{tail} WHERE t.id = :id")

    def bulk_insert(self, lo: int, hi: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(harness.bulk_insert_sql(self.db.dialect, self.table)),
                         {"lo": lo, "hi": hi})
            conn.execute(text(self.sql_insert), {"lo": lo, "hi": hi, "actor": ACTOR})

    def bulk_update(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(self.sql_update), {"actor": ACTOR})
            conn.execute(text(harness.bulk_update_sql(self.table)))

    def bulk_delete(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(self.sql_delete), {"actor": ACTOR})
            conn.execute(text(harness.bulk_delete_sql(self.table)))

    def oltp_update(self, ids: Sequence[int], tag: str) -> None:
        stmt = text(self.sql_row_update)

        def log(session: Any, i: int, name: str, qty: int) -> None:
            session.execute(stmt, {"id": i, "name": name, "qty": qty, "actor": ACTOR})

        harness.oltp_update(self.Session, self.cls, ids, tag, before_change=log)

    def oltp_insert(self, ids: Sequence[int]) -> None:
        stmt = text(self.sql_row_insert)

        def log(session: Any, i: int) -> None:
            session.execute(stmt, {"id": i, "actor": ACTOR})

        harness.oltp_insert(self.Session, self.cls, ids, after_flush=log)



class BareLimit(Limit):
    """The limit writing into a log table without the read indexes (primary
    key only): what the same audit rows cost when no query is served by an index."""

    log = LIMIT_BARE_LOG


# ------------------------------------------------------------------ retrieval data

def _generate_sql(pg: bool, target: str) -> str:
    """INSERT ... SELECT of :m audit rows with a realistic spread (set-based)."""
    dialect = "postgresql" if pg else "sqlite"
    g_table = harness.G_TABLE
    table = f"CASE WHEN {g_table} = 0 THEN 'items_sqlaudit' ELSE 'table_' || {g_table} END"
    op = "CASE g % 10 WHEN 0 THEN 'insert' WHEN 1 THEN 'delete' ELSE 'update' END"
    obj = "jsonb_build_object" if pg else "json_object"
    old = f"CASE WHEN g % 10 = 0 THEN NULL ELSE {obj}('name', 'item ' || g, 'qty', g % 100) END"
    new = f"CASE WHEN g % 10 = 1 THEN NULL ELSE {obj}('name', 'item ' || (g + 1), 'qty', g % 100 + 1) END"
    cols = ("table_name, resource_id, operation, changed_at, changed_by, old_data, new_data"
            + (", transaction_id" if target == "sqlaudit_log" else ""))
    tx = ", g / 3" if target == "sqlaudit_log" else ""
    prefix, source = harness.series(dialect)
    return (f"{prefix} INSERT INTO {target} ({cols}) SELECT {table}, "
            f"CAST({harness.G_RESOURCE} AS TEXT), {op}, {harness.g_time(dialect, aware=True)}, "
            f"{harness.G_USER}, {old}, {new}{tx} FROM {source}")


def fill_audit_tables(engine: Any, pg: bool, m: int) -> None:
    clear_sqlaudit_log(engine, pg)
    run_sql(engine, f"TRUNCATE {LIMIT_LOG}" if pg else f"DELETE FROM {LIMIT_LOG}")
    run_sql(engine, _generate_sql(pg, "sqlaudit_log"), m=m)
    run_sql(engine, _generate_sql(pg, LIMIT_LOG), m=m)
    harness.settle(engine)


def read_queries(db: Database, model: type) -> Dict[str, Dict[str, Callable[[int], int]]]:
    from sqlaudit.retrieval import get_resource_changes

    engine = db.engine()
    Session = sessionmaker(bind=engine)
    pg = db.dialect == "postgresql"

    def ours_resource(k: int) -> int:
        a = harness.read_args(k)
        with Session() as s:
            return len(get_resource_changes(model, session=s, filter_resource_ids=a["resource"]))

    def ours_user_day(k: int) -> int:
        a = harness.read_args(k)
        with Session() as s:
            return len(get_resource_changes(model, session=s, filter_user_ids=a["user"],
                                            filter_date_range=(a["start"], a["end"])))

    cols = "id, resource_id, operation, changed_at, changed_by, old_data, new_data"
    by_resource = text(f"SELECT {cols} FROM {LIMIT_LOG} WHERE table_name = 'items_sqlaudit' "
                       f"AND resource_id = :r ORDER BY changed_at DESC, id DESC")
    by_user = text(f"SELECT {cols} FROM {LIMIT_LOG} WHERE table_name = 'items_sqlaudit' "
                   f"AND changed_by = :u AND changed_at BETWEEN :a AND :b "
                   f"ORDER BY changed_at DESC, id DESC")

    def bound(value: datetime) -> Any:
        return value if pg else value.replace(tzinfo=None)

    def limit_resource(k: int) -> int:
        a = harness.read_args(k)
        with engine.connect() as conn:
            return len(conn.execute(by_resource, {"r": str(a["resource"])}).all())

    def limit_user_day(k: int) -> int:
        a = harness.read_args(k)
        with engine.connect() as conn:
            return len(conn.execute(by_user, {"u": a["user"], "a": bound(a["start"]),
                                              "b": bound(a["end"])}).all())

    return {
        "sqlaudit": {"read_resource": ours_resource, "read_user_day": ours_user_day},
        "limit": {"read_resource": limit_resource, "read_user_day": limit_user_day},
    }


def retrieval_plans(db: Database, model: type) -> Dict[str, Dict[str, str]]:
    """The SQL get_resource_changes sends for both queries, and its plan."""
    from sqlaudit.retrieval import get_resource_changes

    engine = db.engine()
    Session = sessionmaker(bind=engine)
    captured: List[tuple] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:
        if "sqlaudit_log" in statement and statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    a = harness.read_args(1)
    calls = {
        "read_resource": lambda s: get_resource_changes(model, session=s,
                                                        filter_resource_ids=a["resource"]),
        "read_user_day": lambda s: get_resource_changes(
            model, session=s, filter_user_ids=a["user"], filter_date_range=(a["start"], a["end"])),
    }
    plans: Dict[str, Dict[str, str]] = {}
    for workload, call in calls.items():
        captured.clear()
        with Session() as s:
            call(s)
        statement, parameters = captured[-1]
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            if db.dialect == "postgresql":
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                plan = "\n".join(r[0] for r in cur.fetchall())
            else:
                cur.execute("EXPLAIN QUERY PLAN " + statement, parameters)
                plan = "\n".join(f"{r[0]:>3} {r[1]:>3}  {r[3]}" for r in cur.fetchall())
            raw.rollback()
        finally:
            raw.close()
        shown = parameters if isinstance(parameters, dict) else list(parameters)
        plans[workload] = {"sql": statement.strip(), "params": repr(shown), "plan": plan}
    event.remove(engine, "before_cursor_execute", capture)
    return plans


def trigger_profile(db: Database, model: type, rows: int) -> Dict[str, str]:
    """PostgreSQL: EXPLAIN ANALYZE of the three bulk statements on the audited table
    (hooks on, inside one transaction that is rolled back): the trigger lines show
    how much of each statement is trigger time."""
    from sqlaudit.hooks import register_hooks, unregister_hooks

    engine = db.engine()
    table = model.__tablename__
    out: Dict[str, str] = {}
    register_hooks()
    try:
        with engine.connect() as conn:
            trans = conn.begin()
            for workload, sql in (
                ("bulk_insert", harness.bulk_insert_sql("postgresql", table)),
                ("bulk_update", harness.bulk_update_sql(table)),
                ("bulk_delete", harness.bulk_delete_sql(table)),
            ):
                rows_out = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql),
                                        {"lo": 1, "hi": rows}).all()
                out[workload] = "\n".join(r[0] for r in rows_out)
            trans.rollback()
            # single-row statements as the ORM sends them (the third run, warm)
            harness.run_sql(engine, harness.bulk_insert_sql("postgresql", table), lo=1, hi=100)
            for workload, sql in (
                ("single-row UPDATE", f"UPDATE {table} SET name = 'x' || :i, qty = qty + 1 "
                                      f"WHERE id = :i"),
                ("single-row INSERT", f"INSERT INTO {table} (id, name, qty, price, updated_at, "
                                      f"active) VALUES (1000 + :i, 'n', 1, 1.5, now(), true)"),
            ):
                for i in (1, 2, 3):
                    trans = conn.begin()
                    rows_out = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql),
                                            {"i": i}).all()
                    trans.rollback()
                out[workload] = "\n".join(r[0] for r in rows_out)
            harness.run_sql(engine, f"TRUNCATE {table}")
    finally:
        unregister_hooks()
    return out


def cached_plan_effect(db: Database, models: Dict[str, Any], rows: int,
                       transactions: int = 20) -> Dict[str, Any]:
    """PostgreSQL: ORM single-row updates on a connection that served single-row updates
    before and has just run the bulk UPDATE (the rounds give every workload a fresh
    connection), with the server's jit setting and with jit=off. Returns ms per
    transaction per variant and setting."""
    from sqlalchemy.orm import sessionmaker

    out: Dict[str, Any] = {"transactions": transactions, "rows": rows}
    for jit in ("server default", "off"):
        for variant in ("baseline", "limit", "sqlaudit"):
            system = make_system(variant, db, models)
            if jit == "off":
                system.engine.dispose()
                system.engine = create_engine(db.url, pool_size=1, connect_args={
                    "options": f"-csearch_path={db.schema} -cjit=off"})
                system.Session = sessionmaker(bind=system.engine)
            system.before("oltp_update")
            try:
                ids = list(range(1, transactions + 1))
                system.bulk_insert(1, rows)
                system.oltp_update(ids, "warm")  # the connection has served requests before
                # what autovacuum does now and then: ANALYZE invalidates cached plans
                run_sql(system.engine, f"ANALYZE {system.table}")
                system.bulk_update()
                seconds = harness.timed(lambda: system.oltp_update(ids, "cached"))
            finally:
                system.after("oltp_update")
            out.setdefault(jit, {})[variant] = seconds / transactions * 1000
            harness.progress(f"PostgreSQL same connection after the bulk UPDATE, jit {jit}: "
                             f"{variant} {seconds / transactions * 1000:.2f} ms per ORM update")
            system.reset()
            system.close()
    return out


def sqlite_statement_trace(db: Database, models: Dict[str, Any]) -> Dict[str, List[str]]:
    """SQLite: every statement (and trigger) one ORM update transaction runs, per variant."""
    from sqlaudit.hooks import register_hooks, unregister_hooks

    traces: Dict[str, List[str]] = {}
    for variant in ("baseline", "sqlaudit", "limit"):
        system = make_system(variant, db, models)
        system.bulk_insert(1, 10)
        lines: List[str] = []

        def on_connect(dbapi_conn: Any, record: Any) -> None:
            dbapi_conn.set_trace_callback(lines.append)

        system.engine.dispose()
        event.listen(system.engine, "connect", on_connect)
        if variant == "sqlaudit":
            register_hooks()
        try:
            system.oltp_update([3], "warm")
            lines.clear()
            system.oltp_update([5], "trace")
        finally:
            unregister_hooks()
        traces[variant] = [" ".join(l.split())[:160] for l in lines]
        system.delete_above(0)
        system.reset()
        system.close()
    return traces


# ------------------------------------------------------------------ driver

def make_system(variant: str, db: Database, models: Dict[str, Any]) -> System:
    cls = models[variant]
    if variant == "baseline":
        return Plain(variant, db, cls)
    if variant == "limit":
        return Limit(variant, db, cls)
    if variant == LIMIT_BARE:
        return BareLimit(variant, db, cls)
    if variant == ROW_TRIGGER:
        return RowTrigger(variant, db, cls)
    return Audited(variant, db, cls, actor=(variant == "sqlaudit"))


def database_facts(engine: Any, dialect: str) -> Dict[str, str]:
    if dialect == "postgresql":
        names = ("server_version", "shared_buffers", "synchronous_commit", "fsync", "jit",
                 "autovacuum", "work_mem")
        with engine.connect() as conn:
            return {n: conn.execute(text(f"SHOW {n}")).scalar() for n in names}
    import sqlite3
    with engine.connect() as conn:
        return {
            "sqlite_version": sqlite3.sqlite_version,
            "journal_mode": conn.exec_driver_sql("PRAGMA journal_mode").scalar(),
            "synchronous": str(conn.exec_driver_sql("PRAGMA synchronous").scalar()),
        }


def run_dialect(dialect: str, *, rows: int, transactions: int, audit_records: int,
                rounds: int, read_rounds: int, read_calls: int, postgres_url: Optional[str] = None,
                diagnostics: bool = True, profile: bool = True) -> Dict[str, Any]:
    """Everything measured in-process for one dialect (see the module docstring)."""
    from sqlaudit.config import SQLAuditConfig, set_config
    from sqlaudit.hooks import unregister_hooks

    set_config(SQLAuditConfig(get_user_id_callback=lambda: ACTOR, time_zone="UTC"))
    unregister_hooks()
    db = Database(dialect, postgres_url)
    label = "PostgreSQL " if dialect == "postgresql" else "SQLite     "
    result: Dict[str, Any] = {"dialect": dialect}
    systems: List[System] = []
    try:
        models = build_models()
        setup = db.engine()
        models["Base"].metadata.create_all(setup)
        pg = dialect == "postgresql"
        if pg:  # no autovacuum run may land inside a timed statement
            for t in models["Base"].metadata.tables:
                run_sql(setup, f"ALTER TABLE {t} SET (autovacuum_enabled = false)")
        result["database"] = database_facts(setup, dialect)

        def between_rounds() -> None:
            if pg:
                with setup.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("CHECKPOINT"))

        variants = list(VARIANTS) + ([DIAGNOSTIC, ROW_TRIGGER, LIMIT_BARE] if diagnostics else [])
        systems = [make_system(v, db, models) for v in variants]
        harness.progress(f"{label}write workloads: {rows:,} rows, {transactions:,} transactions, "
                         f"{rounds} rounds, variants {', '.join(variants)}")
        result["write"] = harness.run_write_rounds(
            systems, rows=rows, transactions=transactions, rounds=rounds, label=label,
            between_rounds=between_rounds)
        for s in systems:
            s.close()
        if profile and pg:
            harness.progress(f"{label}trigger profile (EXPLAIN ANALYZE)")
            result["trigger_profile"] = trigger_profile(db, models["sqlaudit"], rows)
            result["cached_plan"] = cached_plan_effect(db, models, rows)
        if profile and not pg:
            harness.progress(f"{label}statement trace of one ORM update transaction")
            result["statement_trace"] = sqlite_statement_trace(db, models)

        harness.progress(f"{label}generating {audit_records:,} audit records in sqlaudit_log "
                         f"and {LIMIT_LOG}")
        start = harness.time.perf_counter()
        fill_audit_tables(setup, pg, audit_records)
        result["fill_seconds"] = harness.time.perf_counter() - start
        result["audit_rows"] = scalar(setup, "SELECT count(*) FROM sqlaudit_log")
        result["read"] = harness.run_read_rounds(
            read_queries(db, models["sqlaudit"]), rounds=read_rounds, calls=read_calls, label=label)
        result["plans"] = retrieval_plans(db, models["sqlaudit"])
        return result
    finally:
        for s in systems:
            s.close()
        unregister_hooks()
        db.close()
