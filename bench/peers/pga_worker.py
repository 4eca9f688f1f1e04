"""Worker for postgresql-audit (statement-level PostgreSQL triggers into "activity").

The actor reaches the triggers through a "transaction" row that the library's
before_flush listener inserts when the session flushes versioned objects.
"""

from __future__ import annotations

import importlib.metadata

import sqlalchemy as sa
from sqlalchemy import create_engine
from sqlalchemy.orm import DeclarativeBase

import _worker
from _worker import PeerSystem, harness

cfg = _worker.job()
from postgresql_audit import versioning_manager  # noqa: E402

info = {"package": f"postgresql-audit {importlib.metadata.version('postgresql-audit')}",
        "notes": []}
engine = create_engine(cfg["url"])


class Base(DeclarativeBase):
    pass


versioning_manager.init(Base)


ItemBaseline, Item = _worker.versioned_items(Base)


sa.orm.configure_mappers()
# The audit tables first: their after_create installs audit_table(), which the
# versioned table's own after_create calls (create_all alone orders them after it).
Base.metadata.create_all(engine, tables=[versioning_manager.transaction_cls.__table__,
                                         versioning_manager.activity_cls.__table__])
Base.metadata.create_all(engine)
info["notes"].append("audit tables created before the versioned table (create_all alone fails)")
with engine.connect() as _conn:
    _indexes = _conn.execute(sa.text(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'activity' ORDER BY indexname")).scalars().all()
info["notes"].append(f"indexes on its activity table: {', '.join(_indexes) or 'none'}")
versioning_manager.values = {"actor_id": harness.ACTOR}

systems = [
    harness.PlainSystem("baseline", engine, ItemBaseline, cfg["dialect"]),
    PeerSystem(cfg["peer"], engine, Item, cfg["dialect"],
               count_sql="SELECT count(*), count(t.actor_id) FROM activity AS a "
                         "LEFT JOIN transaction AS t ON t.id = a.transaction_id",
               reset_sql=["TRUNCATE activity, transaction"]),
]


def reads():
    """Fill activity/transaction with :m generated records, return the queries a user
    writes with the library's models (it has no retrieval API)."""
    from sqlalchemy import or_, text
    from sqlalchemy.orm import sessionmaker

    Activity, Transaction = versioning_manager.activity_cls, versioning_manager.transaction_cls
    prefix, src = harness.series("postgresql")
    ts, tab, res = harness.g_time("postgresql"), harness.G_TABLE, harness.G_RESOURCE
    row = f"jsonb_build_object('id', {res}, 'name', 'item ' || g, 'qty', g % 100)"
    changed = "jsonb_build_object('name', 'item ' || (g + 1), 'qty', g % 100 + 1)"
    with engine.begin() as conn:
        conn.execute(text(
            f"INSERT INTO transaction (id, native_transaction_id, issued_at, actor_id) "
            f"SELECT g / 3, CAST(CAST(g / 3 AS text) AS xid8), {ts}, {harness.G_USER} "
            f"FROM {src} WHERE g % 3 = 0"), {"m": m + 3})
        conn.execute(text(
            f"INSERT INTO activity (id, schema_name, table_name, issued_at, native_transaction_id, "
            f"verb, old_data, changed_data, transaction_id) SELECT g, 'public', "
            f"CASE WHEN {tab} = 0 THEN 'items_peer' ELSE 'table_' || {tab} END, {ts}, "
            f"CAST(CAST((g + 2) / 3 AS text) AS xid8), "
            f"CASE g % 10 WHEN 0 THEN 'insert' WHEN 1 THEN 'delete' ELSE 'update' END, "
            f"CASE WHEN g % 10 = 0 THEN '{{}}'::jsonb ELSE {row} END, "
            f"CASE g % 10 WHEN 0 THEN {row} WHEN 1 THEN '{{}}'::jsonb ELSE {changed} END, "
            f"(g + 2) / 3 FROM {src}"), {"m": m})
        conn.execute(text("SELECT setval('activity_id_seq', :m)"), {"m": m})
    harness.settle(engine)
    Session = sessionmaker(bind=engine)

    def q_resource(k):
        rid = str(harness.read_args(k)["resource"])
        with Session() as s:
            return len(s.query(Activity).filter(
                Activity.table_name == "items_peer",
                or_(Activity.old_data["id"].astext == rid, Activity.changed_data["id"].astext == rid),
            ).order_by(Activity.id.desc()).all())

    def q_user_day(k):
        a = harness.read_args(k)
        with Session() as s:
            return len(s.query(Activity).join(Transaction, Activity.transaction_id == Transaction.id)
                       .filter(Transaction.actor_id == a["user"], Activity.table_name == "items_peer",
                               Activity.issued_at.between(a["start"].replace(tzinfo=None),
                                                          a["end"].replace(tzinfo=None)))
                       .order_by(Activity.id.desc()).all())

    info["notes"].append("no retrieval API: the queries filter Activity by table and by the "
                         "key inside old_data/changed_data, and join Transaction for the actor")
    return {cfg["peer"]: {"read_resource": q_resource, "read_user_day": q_user_day}}


m = cfg["audit_records"]
_worker.run(cfg, systems, info, reads)
