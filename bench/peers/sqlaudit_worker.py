"""Worker for the original ORM-hook sqlaudit (0.3.x and the latest PyPI release).

Its hooks are Session events (before/after flush), so they see ORM flushes
only; the worker verifies that by counting "SQLAuditLogs" rows.
"""

from __future__ import annotations

import importlib.metadata
import json
from decimal import Decimal
from typing import Any, Dict

from sqlalchemy import String, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

import _worker
from _worker import PeerSystem, harness

cfg = _worker.job()
version = importlib.metadata.version("sqlaudit")
old = version.startswith("0.3")
info: Dict[str, Any] = {"package": f"sqlaudit {version}", "notes": []}

engine_kw: Dict[str, Any] = {}
if old:
    # 0.3.x stores values with the JSON column's default serializer, which raises
    # TypeError for Decimal and datetime (the commit fails); a user has to pass one.
    engine_kw["json_serializer"] = lambda value: json.dumps(value, default=str)
    info["notes"].append("needs create_engine(json_serializer=...) for Decimal/datetime values")
engine = create_engine(cfg["url"], **engine_kw)
SessionLocal = sessionmaker(bind=engine)


def get_db():
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


from sqlaudit.config import SQLAuditConfig, set_config  # noqa: E402
from sqlaudit.decorators import track_table  # noqa: E402
from sqlaudit.hooks import register_hooks  # noqa: E402
from sqlaudit.retrieval import get_resource_changes  # noqa: E402


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "bench_users"
    user_id: Mapped[str] = mapped_column(String, primary_key=True)


class ItemBaseline(harness.ItemColumns, Base):
    __tablename__ = "items_baseline"


key_kw = {"record_id_field": "id"} if old else {"resource_id_field": "id"}


@track_table(tracked_fields=list(harness.TRACKED), table_label="Item", **key_kw)
class Item(harness.ItemColumns, Base):
    __tablename__ = "items_peer"


Base.metadata.create_all(engine)
config_kw: Dict[str, Any] = {} if old else {"create_all_models": True}
set_config(SQLAuditConfig(session_factory=get_db, user_model=User,
                          user_model_user_id_field="user_id",
                          get_user_id_callback=lambda: harness.ACTOR, **config_kw))
if not old:
    from sqlaudit.serializer import Serializer, TypeHandler
    # the latest release has no Decimal handler (TypeError on commit); register one
    Serializer.register_custom_handler(Decimal, TypeHandler(serialize=str, deserialize=Decimal))
    info["notes"].append("needs Serializer.register_custom_handler(Decimal, ...)")
register_hooks()

logs = '"SQLAuditLogs"'
reset = [f"DELETE FROM {logs}"] if old else ['DELETE FROM "SQLAuditFieldChanges"', f"DELETE FROM {logs}"]
systems = [
    harness.PlainSystem("baseline", engine, ItemBaseline, cfg["dialect"]),
    PeerSystem(cfg["peer"], engine, Item, cfg["dialect"],
               count_sql=f"SELECT count(*), count(changed_by) FROM {logs}", reset_sql=reset),
]


def reads():
    """Fill the peer's own audit tables with :m generated records, return its queries."""
    d, m = cfg["dialect"], cfg["audit_records"]
    pg = d == "postgresql"
    key_col = "record_id_field" if old else "resource_id_field"
    with engine.begin() as conn:
        known = {r[1] for r in conn.execute(text('SELECT table_id, table_name FROM "SQLAuditTables"'))}
        for t in range(1, harness.TABLES):
            if f"table_{t}" not in known:
                conn.execute(text(f'INSERT INTO "SQLAuditTables" (table_name, {key_col}) '
                                  f"VALUES (:n, 'id')"), {"n": f"table_{t}"})
        tables = {r[1]: r[0] for r in conn.execute(text('SELECT table_id, table_name FROM "SQLAuditTables"'))}
        conn.execute(text("CREATE TEMP TABLE bench_field_map (k INTEGER PRIMARY KEY, "
                          "field_id INTEGER, table_id INTEGER)"))
        for tidx in range(harness.TABLES):
            table_id = tables["items_peer" if tidx == 0 else f"table_{tidx}"]
            for fi, field in enumerate(("name", "qty")):
                fid = conn.execute(text('SELECT field_id FROM "SQLAuditFields" WHERE table_id = :t '
                                        'AND field_name = :f'), {"t": table_id, "f": field}).scalar()
                if fid is None:
                    conn.execute(text('INSERT INTO "SQLAuditFields" (table_id, field_name) '
                                      'VALUES (:t, :f)'), {"t": table_id, "f": field})
                    fid = conn.execute(text('SELECT max(field_id) FROM "SQLAuditFields"')).scalar()
                conn.execute(text("INSERT INTO bench_field_map VALUES (:k, :f, :t)"),
                             {"k": tidx * 2 + fi, "f": fid, "t": table_id})
        prefix, src = harness.series(d)
        res = f"CAST({harness.G_RESOURCE} AS TEXT)"
        ts, user, tab = harness.g_time(d), harness.G_USER, harness.G_TABLE
        if old:  # one row per changed field, values as JSON lists
            arr = "json_build_array" if pg else "json_array"
            conn.execute(text(
                f'{prefix} INSERT INTO "SQLAuditLogs" (field_id, record_id, old_value, new_value, '
                f'"timestamp", changed_by) SELECT mp.field_id, {res}, '
                f"CASE WHEN g % 2 = 0 THEN {arr}('item ' || g) ELSE {arr}(g % 100) END, "
                f"CASE WHEN g % 2 = 0 THEN {arr}('item ' || (g + 1)) ELSE {arr}(g % 100 + 1) END, "
                f"{ts}, {user} FROM {src} JOIN bench_field_map AS mp ON mp.k = {tab} * 2 + g % 2"),
                {"m": m})
        else:  # one log row per changed row, two field-change rows each
            rid = "md5(CAST(g AS text))::uuid" if pg else "printf('%032x', g)"
            conn.execute(text(
                f'{prefix} INSERT INTO "SQLAuditLogs" (record_id, table_id, resource_id, '
                f'"timestamp", changed_by) SELECT {rid}, mp.table_id, {res}, {ts}, {user} '
                f"FROM {src} JOIN bench_field_map AS mp ON mp.k = {tab} * 2"), {"m": m})
            conn.execute(text(
                f'{prefix} INSERT INTO "SQLAuditFieldChanges" (record_id, field_id, old_value, '
                f"new_value) SELECT {rid}, mp.field_id, "
                f"CASE f.f WHEN 0 THEN 'item ' || g ELSE CAST(g % 100 AS TEXT) END, "
                f"CASE f.f WHEN 0 THEN 'item ' || (g + 1) ELSE CAST(g % 100 + 1 AS TEXT) END "
                f"FROM {src} JOIN (SELECT 0 AS f UNION ALL SELECT 1) AS f ON 1 = 1 "
                f"JOIN bench_field_map AS mp ON mp.k = {tab} * 2 + f.f"), {"m": m})
        conn.execute(text("DROP TABLE bench_field_map"))
        info["audit_rows"] = conn.execute(text(f"SELECT count(*) FROM {logs}")).scalar()
    harness.settle(engine)

    def q_resource(k):
        a = harness.read_args(k)
        with SessionLocal() as s:
            return len(get_resource_changes(Item, filter_resource_ids=a["resource"], session=s))

    def q_user_day(k):
        a = harness.read_args(k)
        with SessionLocal() as s:
            return len(get_resource_changes(Item, filter_user_ids=a["user"], session=s,
                                            filter_date_range=(a["start"], a["end"])))

    return {cfg["peer"]: {"read_resource": q_resource, "read_user_day": q_user_day}}


_worker.run(cfg, systems, info, reads)
