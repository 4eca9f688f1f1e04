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
DEFAULT_MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
LIMIT_LOG = "bench_limit_log"
ROW_LOG = "bench_rowtrigger_log"
VARIANTS = ("baseline", "sqlaudit", "limit")
DIAGNOSTIC = "sqlaudit_noactor"
ROW_TRIGGER = "rowtrigger"
LIMIT_BARE = "limit_noindex"
LIMIT_BARE_LOG = "bench_limit_noindex_log"
#: MariaDB only: the row trigger reading the user from a session variable that each
#: transaction sets before its first statement and clears before COMMIT, as sqlaudit does
ROW_TRIGGER_VARS = "rowtrigger_uservar"
ROW_VARS_LOG = "bench_rowtrigger_uservar_log"
#: MariaDB only: the cheapest row trigger that writes sqlaudit's record (see RowTriggerRecord)
ROW_TRIGGER_RECORD = "rowtrigger_record"
ROW_RECORD_LOG = "bench_rowtrigger_record_log"

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

    class ItemRowTriggerVars(ItemColumns, Base):
        __tablename__ = "items_rowtrigger_uservar"

    class ItemRowTriggerRecord(ItemColumns, Base):
        __tablename__ = "items_rowtrigger_record"

    _log_table(Base.metadata, LIMIT_LOG, "limit")
    _log_table(Base.metadata, ROW_LOG, "rowtrigger")
    _log_table(Base.metadata, LIMIT_BARE_LOG, "limitbare", indexes=False)
    _log_table(Base.metadata, ROW_VARS_LOG, "rowvars")
    return {"Base": Base, "baseline": ItemBaseline, "sqlaudit": ItemAudited,
            DIAGNOSTIC: ItemAuditedNoActor, "limit": ItemLimit, ROW_TRIGGER: ItemRowTrigger,
            LIMIT_BARE: ItemLimitBare, ROW_TRIGGER_VARS: ItemRowTriggerVars,
            ROW_TRIGGER_RECORD: ItemRowTriggerRecord}


def _log_table(metadata: Any, name: str, tag: str, indexes: bool = True) -> Table:
    """A minimal audit log with the same four indexes as sqlaudit_log (``indexes=False``:
    its primary key only). On MariaDB its columns have sqlaudit_log's types there
    (binary collation, LONGTEXT, DATETIME(6), InnoDB, utf8mb4) and its text indexes the
    same prefixes (MariaDB has no index on an expression)."""
    from sqlalchemy.dialects.mysql import DATETIME as MYSQL_DATETIME, LONGTEXT, VARCHAR

    my = ("mysql", "mariadb")
    data = JSON().with_variant(JSONB(), "postgresql")
    bin_text = Text().with_variant(LONGTEXT(collation="utf8mb4_bin"), *my)
    log = Table(
        name, metadata,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
               autoincrement=True),
        Column("table_name", String(255).with_variant(
            VARCHAR(255, collation="utf8mb4_bin"), *my), nullable=False),
        Column("resource_id", bin_text),
        Column("operation", String(8), nullable=False),
        Column("changed_at", DateTime(timezone=True).with_variant(MYSQL_DATETIME(fsp=6), *my),
               nullable=False),
        Column("changed_by", bin_text),
        Column("transaction_id", BigInteger),
        Column("old_data", data),
        Column("new_data", data),
        mysql_engine="InnoDB", mysql_charset="utf8mb4",
    )
    if indexes:
        from sqlalchemy import DDL
        from sqlaudit.schema import USER_PREFIX, user_prefix  # sqlaudit's user index

        Index(f"ix_bench_{tag}_resource", log.c.table_name, log.c.resource_id, log.c.changed_at,
              mysql_length={"resource_id": 255})
        Index(f"ix_bench_{tag}_user", user_prefix(log.c.changed_by), log.c.changed_at).ddl_if(
            callable_=lambda ddl, target, bind, **kw: kw["dialect"].name not in my)
        event.listen(log, "after_create", DDL(
            f"CREATE INDEX ix_bench_{tag}_user ON {name} (changed_by({USER_PREFIX}), changed_at)"
        ).execute_if(callable_=lambda ddl, target, bind, **kw: kw["dialect"].name in my))
        Index(f"ix_bench_{tag}_transaction", log.c.transaction_id)
        Index(f"ix_bench_{tag}_changed_at", log.c.changed_at)
    return log


# ------------------------------------------------------------------ databases

class Database:
    """A fresh PostgreSQL schema, MariaDB database or SQLite file; ``engine()`` makes
    engines on it."""

    def __init__(self, dialect: str, postgres_url: Optional[str] = None,
                 mariadb_url: Optional[str] = None):
        self.dialect = dialect
        self._engines: List[Any] = []
        if dialect == "mariadb":
            from sqlalchemy.engine import make_url

            self.schema = f"sqlaudit_bench_{uuid.uuid4().hex[:10]}"
            self._admin = create_engine(mariadb_url or DEFAULT_MARIADB_URL)
            run_sql(self._admin, f"CREATE DATABASE `{self.schema}` CHARACTER SET utf8mb4")
            url = make_url(mariadb_url or DEFAULT_MARIADB_URL).set(database=self.schema)
            if "charset" not in url.query:
                url = url.update_query_dict({"charset": "utf8mb4"})
            self.url = url.render_as_string(hide_password=False)
        elif dialect == "postgresql":
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
        if self.dialect == "mariadb":
            run_sql(self._admin, f"DROP DATABASE IF EXISTS `{self.schema}`")
            self._admin.dispose()
        elif self.dialect == "postgresql":
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
        run_sql(self.engine, f"TRUNCATE {self.log}" if self.pg or self.my
                else f"DELETE FROM {self.log}")


class RowTrigger(_OwnLog):
    """A hand-written minimal row-level trigger per operation (see the module docstring)."""

    log = ROW_LOG

    def __init__(self, name: str, db: Database, cls: type):
        super().__init__(name, db, cls)
        for sql in _row_trigger_ddl(self.table, db.dialect, self.log, self.actor_sql):
            with self.engine.begin() as conn:
                conn.exec_driver_sql(sql)

    #: the actor the trigger writes: a constant
    actor_sql = f"'{ACTOR}'"


class RowTriggerUserVar(RowTrigger):
    """MariaDB: the row trigger, with the user read from a session variable that every
    transaction sets (bind parameter) before its first statement and sets to NULL
    before COMMIT: the two statements per transaction that sqlaudit's hooks send.
    The cheapest trigger design that passes a per-transaction user on MariaDB."""

    log = ROW_VARS_LOG
    actor_sql = "@bench_user"
    SET = "SET @bench_user = %s, @bench_tx = %s"
    CLEAR = "SET @bench_user = NULL, @bench_tx = NULL"

    def _in_tx(self, sql: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(self.SET, (ACTOR, 1))
            conn.execute(text(sql), params)
            conn.exec_driver_sql(self.CLEAR)

    def bulk_insert(self, lo: int, hi: int) -> None:
        self._in_tx(harness.bulk_insert_sql(self.dialect, self.table), lo=lo, hi=hi)

    def bulk_update(self) -> None:
        self._in_tx(harness.bulk_update_sql(self.table, self.dialect))

    def bulk_delete(self) -> None:
        self._in_tx(harness.bulk_delete_sql(self.table))

    def oltp_update(self, ids: Sequence[int], tag: str) -> None:
        for i in ids:
            with self.Session() as session:
                session.connection().exec_driver_sql(self.SET, (ACTOR, 1))
                obj = session.get(self.cls, i)
                obj.name, obj.qty = f"item {i} {tag}", obj.qty + 1
                session.flush()
                session.connection().exec_driver_sql(self.CLEAR)
                session.commit()

    def oltp_insert(self, ids: Sequence[int]) -> None:
        for i in ids:
            with self.Session() as session:
                session.connection().exec_driver_sql(self.SET, (ACTOR, 1))
                session.add(harness.new_item(self.cls, i))
                session.flush()
                session.connection().exec_driver_sql(self.CLEAR)
                session.commit()



class RowTriggerRecord(RowTriggerUserVar):
    """MariaDB: the cheapest row trigger that writes sqlaudit's record: one INSERT per
    row, no BEGIN ... END, into a copy of sqlaudit_log (``CREATE TABLE ... LIKE``: its
    columns, checks and indexes), with every value sqlaudit records: the key as text,
    the time, the acting user, reason, context and transaction id from session variables
    (set and cleared per transaction, as RowTriggerUserVar does), the database account
    and client host from USER(), the five values in sqlaudit's exact encoding. What it
    leaves out of sqlaudit's trigger: the update's changed fields only (it writes all
    five old and new values when one changed), a changed key as delete + insert, the
    optional fail-closed check, the fingerprint that audit_status reads."""

    log = ROW_RECORD_LOG
    SET = ("SET @bench_user = %s, @bench_tx = %s, @bench_reason = NULL, "
           "@bench_context = NULL")
    CLEAR = "SET @bench_user = NULL, @bench_tx = NULL, @bench_reason = NULL, @bench_context = NULL"

    def __init__(self, name: str, db: Database, cls: type):
        run_sql(db.engine(), f"CREATE TABLE IF NOT EXISTS {self.log} LIKE sqlaudit_log")
        Plain.__init__(self, name, db, cls)
        for sql in _record_trigger_ddl(self.table, self.log):
            with self.engine.begin() as conn:
                conn.exec_driver_sql(sql)


#: sqlaudit's encoding of the benchmark's five columns on MariaDB (sqlaudit/dialects/mysql.py:
#: DECIMAL and DATETIME as their exact text), written out by hand
def _record_json(alias: str) -> str:
    as_text = "CAST({} AS CHAR CHARACTER SET utf8mb4)"
    return (f"JSON_OBJECT('name', {alias}.name, 'qty', {alias}.qty, 'price', "
            f"{as_text.format(f'{alias}.price')}, 'updated_at', "
            f"{as_text.format(f'CAST({alias}.updated_at AS DATETIME(6))')}, "
            f"'active', {alias}.active)")


RECORD_COLUMNS = ("table_schema, table_name, resource_id, operation, changed_at, changed_by, "
                  "db_role, transaction_id, reason, old_data, new_data, context, "
                  "application_name, client_addr")


def _record_values(table: str, alias: str, op: str, old: str, new: str, *, user: str,
                   tx: str, reason: str, context: str, role: str, addr: str,
                   key: Optional[str] = None) -> str:
    """One sqlaudit_log row's values (``key`` defaults to sqlaudit's: the id as text)."""
    key = key or f"CAST({alias}.id AS CHAR CHARACTER SET utf8mb4)"
    return (f"NULL, '{table}', {key}, '{op}', UTC_TIMESTAMP(6), {user}, {role}, {tx}, {reason}, "
            f"{old}, {new}, {context}, NULL, {addr}")


def _session(var: str) -> str:
    """A session variable as sqlaudit's trigger reads it: NULL when unset or empty."""
    return f"IF(CHAR_LENGTH({var}) > 0, {var}, NULL)"


#: USER() split as sqlaudit's trigger splits it: the account and the client host
ACCOUNT, CLIENT_HOST = "SUBSTRING_INDEX(USER(), '@', 1)", "SUBSTRING_INDEX(USER(), '@', -1)"


def _record_trigger_ddl(table: str, log: str) -> List[str]:
    """RowTriggerRecord's three triggers."""
    vars_ = dict(user=_session("@bench_user"), tx="@bench_tx", reason=_session("@bench_reason"),
                 context=_session("@bench_context"), role=ACCOUNT, addr=CLIENT_HOST)
    changed = " OR ".join(
        "NOT (CAST(OLD.name AS BINARY) <=> CAST(NEW.name AS BINARY))" if c == "name"
        else f"NOT (OLD.{c} <=> NEW.{c})" for c in TRACKED)
    head = f"INSERT INTO {log} ({RECORD_COLUMNS})"
    new, old = _record_json("NEW"), _record_json("OLD")
    return [
        f"CREATE OR REPLACE TRIGGER bench_rec_ins_{table} AFTER INSERT ON {table} FOR EACH ROW "
        f"{head} VALUES ({_record_values(table, 'NEW', 'insert', 'NULL', new, **vars_)})",
        f"CREATE OR REPLACE TRIGGER bench_rec_upd_{table} AFTER UPDATE ON {table} FOR EACH ROW "
        f"{head} SELECT {_record_values(table, 'NEW', 'update', old, new, **vars_)} "
        f"FROM DUAL WHERE {changed}",
        f"CREATE OR REPLACE TRIGGER bench_rec_del_{table} AFTER DELETE ON {table} FOR EACH ROW "
        f"{head} VALUES ({_record_values(table, 'OLD', 'delete', old, 'NULL', **vars_)})",
    ]


def _row_trigger_ddl(table: str, dialect: str, log: str = ROW_LOG,
                     actor: str = f"'{ACTOR}'") -> List[str]:
    pg = dialect == "postgresql"
    if harness.is_mariadb(dialect):
        return _row_trigger_ddl_mariadb(table, log, actor)
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


def _row_trigger_ddl_mariadb(table: str, log: str, actor: str) -> List[str]:
    """MariaDB: one AFTER ... FOR EACH ROW trigger per operation, each one INSERT of the
    limit's row (the update's only when a tracked column changed, compared with <=>)."""
    cols = "table_name, resource_id, operation, changed_at, changed_by, old_data, new_data"
    now = "UTC_TIMESTAMP(6)"
    changed = " OR ".join(f"NOT (OLD.{c} <=> NEW.{c})" for c in TRACKED)
    new, old = _json("NEW", "mariadb"), _json("OLD", "mariadb")
    return [
        f"CREATE OR REPLACE TRIGGER bench_row_ins_{table} AFTER INSERT ON {table} FOR EACH ROW "
        f"INSERT INTO {log} ({cols}) VALUES ('{table}', NEW.id, 'insert', {now}, {actor}, "
        f"NULL, {new})",
        f"CREATE OR REPLACE TRIGGER bench_row_upd_{table} AFTER UPDATE ON {table} FOR EACH ROW "
        f"INSERT INTO {log} ({cols}) SELECT '{table}', NEW.id, 'update', {now}, {actor}, "
        f"{old}, {new} FROM DUAL WHERE {changed}",
        f"CREATE OR REPLACE TRIGGER bench_row_del_{table} AFTER DELETE ON {table} FOR EACH ROW "
        f"INSERT INTO {log} ({cols}) VALUES ('{table}', OLD.id, 'delete', {now}, {actor}, "
        f"{old}, NULL)",
    ]


def clear_sqlaudit_log(engine: Any, pg: bool) -> None:
    """Empty the append-only audit table the sanctioned way (prune_audit_log), untimed.
    On MariaDB with TRUNCATE (which fires no trigger), the reset the other variants' log
    tables get: prune_audit_log's row-by-row DELETE would leave InnoDB purging hundreds
    of thousands of delete-marked index entries of sqlaudit_log into the next round."""
    from sqlaudit.ddl import prune_audit_log

    if scalar(engine, "SELECT count(*) FROM sqlaudit_log") == 0:
        return
    if harness.is_mariadb(engine.dialect.name):
        run_sql(engine, "TRUNCATE sqlaudit_log")
        return
    prune_audit_log(engine, datetime(9000, 1, 1, tzinfo=timezone.utc))
    if pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM sqlaudit_log"))


def _json(alias: str, pg: Any, override: Optional[Dict[str, str]] = None) -> str:
    """JSON object of the five tracked columns (``override`` replaces expressions);
    ``pg``: True for PostgreSQL, False for SQLite, or a dialect name."""
    override = override or {}
    fn = ("jsonb_build_object" if pg is True or pg == "postgresql" else
          "JSON_OBJECT" if isinstance(pg, str) and harness.is_mariadb(pg) else "json_object")
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

    #: the same on MariaDB
    NEW_MARIADB = {"qty": "t.qty + 1", "name": "CONCAT(t.name, '*')"}

    def __init__(self, name: str, db: Database, cls: type):
        super().__init__(name, db, cls)
        if self.my:
            self._mariadb_sql()
            return
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

    def _mariadb_sql(self) -> None:
        """The same statements in MariaDB's SQL (JSON_OBJECT, <=>, UTC_TIMESTAMP(6); the
        transaction id a constant, as on SQLite: sqlaudit's is a value its hooks set)."""
        d = "mariadb"
        head = (f"INSERT INTO {self.log} (table_name, resource_id, operation, changed_at, "
                f"changed_by, old_data, new_data, transaction_id) SELECT '{self.table}', t.id, ")
        now, actor, tail = "UTC_TIMESTAMP(6)", "CAST(:actor AS CHAR)", f", 1 FROM {self.table} AS t"
        self.sql_insert = (f"{head}'insert', {now}, {actor}, NULL, {_json('t', d)} "
                           f"{tail} WHERE t.id BETWEEN :lo AND :hi")
        changed = " OR ".join(f"NOT (({e}) <=> t.{c})" for c, e in self.NEW_MARIADB.items())
        self.sql_update = (f"{head}'update', {now}, {actor}, {_json('t', d)}, "
                           f"{_json('t', d, self.NEW_MARIADB)}{tail} WHERE {changed}")
        self.sql_delete = f"{head}'delete', {now}, {actor}, {_json('t', d)}, NULL {tail}"
        binds = {"name": "CAST(:name AS CHAR)", "qty": "CAST(:qty AS SIGNED)"}
        self.sql_row_update = (f"{head}'update', {now}, {actor}, {_json('t', d)}, "
                               f"{_json('t', d, binds)}{tail} WHERE t.id = :id")
        self.sql_row_insert = (f"{head}'insert', {now}, {actor}, NULL, {_json('t', d)} "
                               f"{tail} WHERE t.id = :id")

    def bulk_insert(self, lo: int, hi: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(harness.bulk_insert_sql(self.db.dialect, self.table)),
                         {"lo": lo, "hi": hi})
            conn.execute(text(self.sql_insert), {"lo": lo, "hi": hi, "actor": ACTOR})

    def bulk_update(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(self.sql_update), {"actor": ACTOR})
            conn.execute(text(harness.bulk_update_sql(self.table, self.dialect)))

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

def _generate_sql(pg: Any, target: str) -> str:
    """INSERT ... SELECT of :m audit rows with a realistic spread (set-based); ``pg``:
    True (PostgreSQL), False (SQLite) or a dialect name."""
    dialect = pg if isinstance(pg, str) else ("postgresql" if pg else "sqlite")
    my = harness.is_mariadb(dialect)
    g_table, g_resource, g_user = harness.g_exprs(dialect)
    cat = lambda *parts: harness.concat(dialect, *parts)  # noqa: E731
    other, item, item_next = cat("'table_'", g_table), cat("'item '", "g"), cat("'item '", "(g + 1)")
    table = f"CASE WHEN {g_table} = 0 THEN 'items_sqlaudit' ELSE {other} END"
    op = "CASE g % 10 WHEN 0 THEN 'insert' WHEN 1 THEN 'delete' ELSE 'update' END"
    obj = "jsonb_build_object" if dialect == "postgresql" else "JSON_OBJECT" if my else "json_object"
    old = f"CASE WHEN g % 10 = 0 THEN NULL ELSE {obj}('name', {item}, 'qty', g % 100) END"
    new = (f"CASE WHEN g % 10 = 1 THEN NULL ELSE {obj}('name', {item_next}, "
           f"'qty', g % 100 + 1) END")
    cols = ("table_name, resource_id, operation, changed_at, changed_by, old_data, new_data"
            + (", transaction_id" if target == "sqlaudit_log" else ""))
    tx = (", g DIV 3" if my else ", g / 3") if target == "sqlaudit_log" else ""
    prefix, source = harness.series(dialect)
    return (f"{prefix} INSERT INTO {target} ({cols}) SELECT {table}, "
            f"CAST({g_resource} AS {'CHAR' if my else 'TEXT'}), {op}, "
            f"{harness.g_time(dialect, aware=True)}, {g_user}, {old}, {new}{tx} FROM {source}")


def fill_audit_tables(engine: Any, pg: bool, m: int, dialect: Optional[str] = None) -> None:
    dialect = dialect or ("postgresql" if pg else "sqlite")
    clear_sqlaudit_log(engine, pg)
    truncate = pg or harness.is_mariadb(dialect)
    run_sql(engine, f"TRUNCATE {LIMIT_LOG}" if truncate else f"DELETE FROM {LIMIT_LOG}")
    run_sql(engine, _generate_sql(dialect, "sqlaudit_log"), m=m)
    run_sql(engine, _generate_sql(dialect, LIMIT_LOG), m=m)
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
            elif db.dialect == "mariadb":
                cur.execute("EXPLAIN " + statement, parameters)
                names = [c[0] for c in cur.description]
                rows_ = [[("NULL" if v is None else str(v)) for v in r] for r in cur.fetchall()]
                widths = [max(len(x) for x in col) for col in zip(names, *rows_)]
                plan = "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()
                                 for r in [names] + rows_)
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


def mariadb_round_trips(db: Database, models: Dict[str, Any], variants: Sequence[str],
                        calls: int = 2000) -> Dict[str, Any]:
    """MariaDB: the statements the client sends per ORM update and ORM insert transaction,
    per variant (the session's ``Questions`` status counter, read before and after on
    the same pooled connection, less what two bare reads of the counter add), and the
    time of one round trip that sets a user variable to NULL (median over ``calls``)."""
    from sqlalchemy.orm import sessionmaker

    out: Dict[str, Any] = {"statements": {}}
    for variant in variants:
        system = make_system(variant, db, models)
        system.engine.dispose()
        system.engine = create_engine(db.url, pool_size=1, max_overflow=0)
        system.Session = sessionmaker(bind=system.engine)

        def questions() -> int:
            with system.engine.connect() as conn:
                return int(conn.execute(text("SHOW SESSION STATUS LIKE 'Questions'")).one()[1])

        system.bulk_insert(1, 10)
        system.before("oltp_update")
        try:
            system.oltp_update([1], "warm")
            system.oltp_insert([11])
            q0 = questions()
            q1 = questions()  # what reading the counter itself adds
            system.oltp_update([2], "count")
            q2 = questions()
            system.oltp_insert([12])
            q3 = questions()
        finally:
            system.after("oltp_update")
        idle = q1 - q0
        out["statements"][variant] = {"oltp_update": q2 - q1 - idle, "oltp_insert": q3 - q2 - idle}
        harness.progress(f"MariaDB statements per transaction: {variant} "
                         f"{out['statements'][variant]}")
        system.reset()
        system.close()
    engine = create_engine(db.url, pool_size=1, max_overflow=0)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        per_call = []
        for _ in range(calls):
            start = harness.time.perf_counter()
            cur.execute("SET @bench_user = NULL")
            per_call.append(harness.time.perf_counter() - start)
        import statistics
        out["round_trip_seconds"] = statistics.median(per_call)
        out["round_trip_calls"] = calls
    finally:
        raw.close()
        engine.dispose()
    return out


#: mariadb_trigger_steps: from the minimal row trigger to sqlaudit's, one difference a step
#: (each AFTER INSERT trigger but the first writes into a copy of sqlaudit_log)
MARIADB_STEPS = {
    "rowtrigger": "hand-written minimal row trigger (7 columns into the bench log, constant user)",
    "table": "the same 7 columns into a copy of sqlaudit_log (`CREATE TABLE ... LIKE`: its "
             "columns, JSON checks and indexes)",
    "width": "all 14 columns of sqlaudit's row, the session's values as constants",
    "user": "the acting user from @sqlaudit_user_id",
    "session": "the transaction id, reason and context from their session variables too",
    "account": "the database account and client host from USER()",
    "encoding": "sqlaudit's value encoding (the key as text, DECIMAL and DATETIME as exact "
                "text): the record floor's insert trigger",
    "sqlaudit": "sqlaudit's trigger (its BEGIN ... END body and fingerprint branch; hooks on, "
                "the user set per transaction)",
}


def mariadb_trigger_steps(db: Database, models: Dict[str, Any], rows: int,
                          rounds: int = 3) -> Dict[str, Any]:
    """MariaDB: the INSERT ... SELECT of ``rows`` rows on tables whose row triggers go
    from the hand-written minimal one to sqlaudit's one difference at a time
    (MARIADB_STEPS), ``rounds`` interleaved rounds: where sqlaudit's per-row cost
    beyond the minimal trigger goes."""
    from sqlaudit.hooks import register_hooks, unregister_hooks

    engine = db.engine()
    const = dict(user=f"'{ACTOR}'", tx="NULL", reason="NULL", context="NULL", role="'root'",
                 addr="'localhost'", key="NEW.id")
    user = {**const, "user": _session("@sqlaudit_user_id")}
    session = {**user, "tx": "@sqlaudit_transaction_id", "reason": _session("@sqlaudit_reason"),
               "context": _session("@sqlaudit_context")}
    account = {**session, "role": ACCOUNT, "addr": CLIENT_HOST}
    encoding = {k: v for k, v in account.items() if k != "key"}
    minimal = _json("NEW", "mariadb")
    bodies = {  # step -> (values of sqlaudit_log's columns, or None for the 7 columns)
        "table": None, "width": (minimal, const), "user": (minimal, user),
        "session": (minimal, session), "account": (minimal, account),
        "encoding": (_record_json("NEW"), encoding),
    }
    tables = {"rowtrigger": "items_rowtrigger", "sqlaudit": "items_sqlaudit"}
    logs = {"rowtrigger": ROW_LOG}
    for step, spec in bodies.items():
        table, log = f"items_step_{step}", f"bench_step_{step}_log"
        if spec is None:
            insert = (f"INSERT INTO {log} (table_name, resource_id, operation, changed_at, "
                      f"changed_by, old_data, new_data) VALUES ('{table}', NEW.id, 'insert', "
                      f"UTC_TIMESTAMP(6), '{ACTOR}', NULL, {minimal})")
        else:
            js, values = spec
            insert = (f"INSERT INTO {log} ({RECORD_COLUMNS}) VALUES "
                      f"({_record_values(table, 'NEW', 'insert', 'NULL', js, **values)})")
        for sql in (f"CREATE TABLE {table} LIKE items_baseline",
                    f"CREATE TABLE {log} LIKE sqlaudit_log",
                    f"CREATE TRIGGER bench_step_{step} AFTER INSERT ON {table} FOR EACH ROW "
                    f"{insert}"):
            run_sql(engine, sql)
        tables[step], logs[step] = table, log
    samples: List[Dict[str, Any]] = []
    register_hooks()
    try:
        for rnd in range(rounds + 1):  # round 0: warm-up at a tenth, discarded
            n = max(rows // 10, 10) if rnd == 0 else rows
            line = []
            for step in harness.rotate(list(MARIADB_STEPS), rnd):
                sql = text(harness.bulk_insert_sql("mariadb", tables[step]))
                harness.settle_mariadb(engine)

                def insert() -> None:
                    with engine.begin() as conn:
                        conn.execute(sql, {"lo": 1, "hi": n})

                seconds = harness.timed(insert)
                line.append(f"{step} {seconds:.3f}s")
                if rnd:
                    samples.append({"system": step, "workload": "bulk_insert", "round": rnd,
                                    "seconds": seconds, "units": n})
            harness.progress(f"MariaDB    trigger steps {'warm-up' if rnd == 0 else f'round {rnd}/{rounds}'}: "
                             + ", ".join(line))
            for step, table in tables.items():
                run_sql(engine, f"TRUNCATE {table}")
                if step in logs:
                    run_sql(engine, f"TRUNCATE {logs[step]}")
            clear_sqlaudit_log(engine, False)
    finally:
        unregister_hooks()
    return {"rows": rows, "rounds": rounds, "samples": samples}


# ------------------------------------------------------------------ driver

def make_system(variant: str, db: Database, models: Dict[str, Any]) -> System:
    cls = models[variant]
    if variant == ROW_TRIGGER_VARS:
        return RowTriggerUserVar(variant, db, cls)
    if variant == ROW_TRIGGER_RECORD:
        return RowTriggerRecord(variant, db, cls)
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
    if dialect == "mariadb":
        names = ("version", "innodb_buffer_pool_size", "innodb_log_file_size",
                 "innodb_flush_log_at_trx_commit", "log_bin", "sync_binlog", "tx_isolation")
        with engine.connect() as conn:
            facts = {n: str(conn.execute(text(f"SELECT @@{n}")).scalar()) for n in names}
            import pymysql
            facts["driver"] = f"PyMySQL {pymysql.__version__}"
            return facts
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
                diagnostics: bool = True, profile: bool = True,
                mariadb_url: Optional[str] = None) -> Dict[str, Any]:
    """Everything measured in-process for one dialect (see the module docstring)."""
    from sqlaudit.config import SQLAuditConfig, set_config
    from sqlaudit.hooks import unregister_hooks

    set_config(SQLAuditConfig(get_user_id_callback=lambda: ACTOR, time_zone="UTC"))
    unregister_hooks()
    db = Database(dialect, postgres_url, mariadb_url)
    label = {"postgresql": "PostgreSQL ", "mariadb": "MariaDB    "}.get(dialect, "SQLite     ")
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

        my = dialect == "mariadb"
        variants = list(VARIANTS) + ([DIAGNOSTIC, ROW_TRIGGER, LIMIT_BARE] if diagnostics else [])
        if my:  # the row trigger is MariaDB's target: always there, with the two floors
            variants += [v for v in (ROW_TRIGGER, ROW_TRIGGER_VARS, ROW_TRIGGER_RECORD)
                         if v not in variants]
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
        if profile and my:
            harness.progress(f"{label}statements per ORM transaction (Questions counter)")
            result["round_trips"] = mariadb_round_trips(
                db, models, ["baseline", "limit", "sqlaudit", ROW_TRIGGER, ROW_TRIGGER_VARS,
                             ROW_TRIGGER_RECORD])
            harness.progress(f"{label}from the minimal row trigger to sqlaudit's, step by step")
            result["trigger_steps"] = mariadb_trigger_steps(db, models, rows, rounds)
        if profile and dialect == "sqlite":
            harness.progress(f"{label}statement trace of one ORM update transaction")
            result["statement_trace"] = sqlite_statement_trace(db, models)

        harness.progress(f"{label}generating {audit_records:,} audit records in sqlaudit_log "
                         f"and {LIMIT_LOG}")
        start = harness.time.perf_counter()
        fill_audit_tables(setup, pg, audit_records, dialect)
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
