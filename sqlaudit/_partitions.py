"""A range-partitioned ``sqlaudit_log`` on PostgreSQL (opt-in; SQLite keeps one table).

The log is partitioned by ``changed_at`` (month, week or day), with range
partitions created ahead and a DEFAULT partition that catches any time no range
covers, so no write can fail for a missing partition. The layout is read from
the catalog each time (``relkind``, the partition bounds, the period recorded in
the DEFAULT partition's comment); nothing in Python state feeds the SQL.

* :func:`create_log` is :func:`sqlaudit.ddl.create_audit_log`;
* :func:`maintain` is :func:`sqlaudit.ddl.maintain_audit_partitions`;
* :func:`prune_remover` makes :func:`sqlaudit.ddl.prune_audit_log` drop whole
  partitions older than the cutoff and DELETE only in the boundary ones;
* :func:`convert` is :func:`sqlaudit.ddl.partition_audit_log` (and the Alembic
  operation ``op.partition_audit_log``).

The rendering functions (``*_statements``) take every input as an argument.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional

from sqlalchemy import (BigInteger, Column, MetaData, PrimaryKeyConstraint, Table, and_, func,
                        select, text)
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex, CreateTable, SetTableComment

from . import _templates
from ._naming import AUDIT_TABLE_NAME
from .exceptions import (SQLAuditArgumentError, SQLAuditArgumentTypeError, SQLAuditError,
                         SQLAuditTableNotInDatabaseError, SQLAuditUnsupportedDialectError)

#: The periods a log can be partitioned by.
PERIODS = ("month", "week", "day")
#: Name of the DEFAULT partition.
DEFAULT_PARTITION = f"{AUDIT_TABLE_NAME}_default"
#: The id sequence of a partitioned log (the same name a plain log's BIGSERIAL gets).
SEQUENCE = f"{AUDIT_TABLE_NAME}_id_seq"
#: Prefix of the DEFAULT partition's comment that records the period.
MARK = "sqlaudit: partition_by="
#: Largest ``ahead``: partitions are cheap, but thousands of them slow planning.
MAX_AHEAD = 400
#: Each partition created takes locks (the table, its indexes) held until the
#: transaction ends; thousands at once (years of backfilled days) would exhaust
#: the server's lock table (max_locks_per_transaction). So one maintain run
#: gives at most this many past periods waiting in DEFAULT their partitions,
#: the oldest first; the current period and those ahead always come.
PAST_PERIODS_PER_RUN = 50
#: The same limit for a prune: each partition it drops holds about 24 locks (the
#: table, its indexes, the detach and drop), so it drops at most this many in one
#: transaction and refuses a larger prune up front, naming the cutoff of a step.
DROPS_PER_PRUNE = 100
_DIALECT = "postgresql"


# ---------------------------------------------------------------- arguments


def check_options(partition_by: Optional[str], ahead: int) -> None:
    """``partition_by`` is None or one of :data:`PERIODS`; ``ahead`` an int in 0..MAX_AHEAD."""
    if partition_by is not None:
        if not isinstance(partition_by, str):
            raise SQLAuditArgumentTypeError(f"partition_by must be one of {PERIODS} or None, got {partition_by!r}")
        if partition_by not in PERIODS:
            raise SQLAuditArgumentError(
                f"partition_by must be one of {', '.join(map(repr, PERIODS))} (or None for one "
                f"table), got {partition_by!r}")
    if isinstance(ahead, bool) or not isinstance(ahead, int):
        raise SQLAuditArgumentTypeError(f"ahead must be an int (periods to create after the current one), got {ahead!r}")
    if not 0 <= ahead <= MAX_AHEAD:
        raise SQLAuditArgumentError(f"ahead must be between 0 and {MAX_AHEAD}, got {ahead}")


def require_postgresql(connection: Connection, what: str, advice: str = "") -> None:
    if connection.dialect.name != "postgresql":
        raise SQLAuditUnsupportedDialectError(
            f"{what} needs PostgreSQL: on {connection.dialect.name} sqlaudit_log is one "
            f"table, without partitions{advice}.")


# ---------------------------------------------------------------- periods (pure)


def period_start(moment: datetime, by: str) -> datetime:
    """Start (UTC) of the period of ``by`` holding ``moment``; weeks start on Monday."""
    m = moment.astimezone(timezone.utc)
    day = datetime(m.year, m.month, m.day, tzinfo=timezone.utc)
    if by == "day":
        return day
    if by == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_start(start: datetime, by: str) -> datetime:
    if by == "day":
        return start + timedelta(days=1)
    if by == "week":
        return start + timedelta(days=7)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def wanted_ranges(now: datetime, by: str, ahead: int) -> list[tuple[datetime, datetime]]:
    """The current period and ``ahead`` periods after it, as [start, end) pairs."""
    start = period_start(now, by)
    ranges = []
    for _ in range(ahead + 1):
        end = next_start(start, by)
        ranges.append((start, end))
        start = end
    return ranges


def partition_name(start: datetime) -> str:
    return f"{AUDIT_TABLE_NAME}_p{start.astimezone(timezone.utc):%Y%m%d}"


# ---------------------------------------------------------------- the catalog


@dataclasses.dataclass(frozen=True)
class Partition:
    """One partition of the log: ``start``/``end`` are None for MINVALUE/MAXVALUE."""

    name: str
    start: Optional[datetime]
    end: Optional[datetime]
    default: bool
    guarded: bool
    comment: Optional[str]

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return (not self.default and (self.start is None or self.start < end)
                and (self.end is None or start < self.end))


@dataclasses.dataclass(frozen=True)
class Layout:
    """What the catalog says about ``schema.sqlaudit_log``."""

    schema: str
    partitioned: bool
    partitions: tuple[Partition, ...]

    @property
    def default(self) -> Optional[Partition]:
        return next((p for p in self.partitions if p.default), None)

    @property
    def ranges(self) -> list[Partition]:
        return sorted((p for p in self.partitions if not p.default),
                      key=lambda p: p.start or datetime.min.replace(tzinfo=timezone.utc))

    @property
    def by(self) -> Optional[str]:
        """The period: from the DEFAULT partition's comment, else the widest usual range."""
        default = self.default
        if default is not None and default.comment and default.comment.startswith(MARK):
            value = default.comment[len(MARK):].strip()
            if value in PERIODS:
                return value
        for p in self.ranges:
            if p.start is not None and p.end is not None:
                days = (p.end - p.start).days
                if days == 1:
                    return "day"
                if days == 7:
                    return "week"
                if 28 <= days <= 31:
                    return "month"
        return None


_ROOT = text(
    "SELECT c.oid, c.relkind FROM pg_catalog.pg_class AS c "
    "JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace "
    "WHERE n.nspname = :schema AND c.relname = :name AND c.relkind IN ('r', 'p')")
_CHILDREN = text(
    """
    SELECT c.relname AS name, m.bound = 'DEFAULT' AS is_default,
           CASE WHEN m.b[1] IS NULL OR m.b[1] = 'MINVALUE' THEN NULL
                ELSE btrim(m.b[1], '''')::timestamptz END AS lower,
           CASE WHEN m.b[2] IS NULL OR m.b[2] = 'MAXVALUE' THEN NULL
                ELSE btrim(m.b[2], '''')::timestamptz END AS upper,
           pg_catalog.obj_description(c.oid, 'pg_class') AS comment,
           EXISTS (SELECT 1 FROM pg_catalog.pg_trigger AS t
                   WHERE t.tgrelid = c.oid AND t.tgname = 'sqlaudit_no_truncate') AS guarded
    FROM pg_catalog.pg_inherits AS i
    JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound) AS e
    CROSS JOIN LATERAL (SELECT e.bound,
                               regexp_match(e.bound, '^FOR VALUES FROM \\((.*)\\) TO \\((.*)\\)$') AS b) AS m
    WHERE i.inhparent = :oid
    ORDER BY c.relname
    """)


def read_layout(connection: Connection, schema: str) -> Optional[Layout]:
    """The log of ``schema`` as the catalog describes it; None when there is none."""
    root = connection.execute(_ROOT, {"schema": schema, "name": AUDIT_TABLE_NAME}).first()
    if root is None:
        return None
    if root.relkind != "p":
        return Layout(schema, False, ())
    rows = connection.execute(_CHILDREN, {"oid": root.oid}).all()
    return Layout(schema, True, tuple(
        Partition(r.name, r.lower, r.upper, bool(r.is_default), bool(r.guarded), r.comment)
        for r in rows))


def is_partitioned(connection: Connection, schema: Optional[str]) -> bool:
    if connection.dialect.name != "postgresql" or schema is None:
        return False
    layout = read_layout(connection, schema)
    return layout is not None and layout.partitioned


def partition_names(connection: Connection, schema: str) -> set[str]:
    """Names of the partitions of ``schema.sqlaudit_log`` (none when it is a plain table)."""
    layout = read_layout(connection, schema)
    return {p.name for p in layout.partitions} if layout is not None else set()


# ---------------------------------------------------------------- rendering (pure)


def _dialect() -> Any:
    from .dialects import rendering_dialect

    return rendering_dialect("postgresql")


def _qualified(schema: str, name: str) -> str:
    prep = _dialect().identifier_preparer
    return f"{prep.quote_schema(schema)}.{prep.quote(name)}"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ts(value: datetime) -> str:
    return _literal(value.astimezone(timezone.utc).isoformat())


def _names(schema: str) -> dict[str, str]:
    return {"audit_table": _qualified(schema, AUDIT_TABLE_NAME),
            "protect_function": _qualified(schema, f"{AUDIT_TABLE_NAME}_protect")}


def partitioned_table(schema: str, sequence: Optional[str] = None) -> Table:
    """``sqlaudit_log`` as a partitioned table: the columns of
    :func:`sqlaudit.schema.audit_table`, the primary key ``(id, changed_at)`` (it
    must hold the partition key), ids from the named sequence ``sequence``
    (qualified; default :data:`SEQUENCE` in ``schema``)."""
    from .schema import audit_table

    base = audit_table(MetaData(schema=schema))
    sequence = sequence or _qualified(schema, SEQUENCE)
    columns = []
    for column in base.columns:
        if column.name == "id":
            columns.append(Column("id", BigInteger, nullable=False, autoincrement=False,
                                  server_default=text(f"nextval({_literal(sequence)}::regclass)")))
        else:
            columns.append(column._copy())
    return Table(AUDIT_TABLE_NAME, MetaData(schema=schema), *columns,
                 PrimaryKeyConstraint("id", "changed_at", name=f"{AUDIT_TABLE_NAME}_pkey"),
                 comment=base.comment, info=dict(base.info),
                 postgresql_partition_by="RANGE (changed_at)")


def protect_partition_statements(schema: str, name: str) -> list[str]:
    return _templates.render(_DIALECT, "partition_protect", partition=_qualified(schema, name),
                             protect_function=_names(schema)["protect_function"])


def range_statements(schema: str, start: datetime, end: datetime) -> list[str]:
    name = partition_name(start)
    return [*_templates.render(_DIALECT, "partition_range", partition=_qualified(schema, name),
                               audit_table=_names(schema)["audit_table"],
                               start=_ts(start), end=_ts(end)),
            *protect_partition_statements(schema, name)]


def default_statements(schema: str, by: str) -> list[str]:
    return [*_templates.render(_DIALECT, "partition_default",
                               partition=_qualified(schema, DEFAULT_PARTITION),
                               audit_table=_names(schema)["audit_table"], mark=_literal(MARK + by)),
            *protect_partition_statements(schema, DEFAULT_PARTITION)]


def lock_statements(schema: str) -> tuple[str, str]:
    """(advisory lock of this schema's partition work, ACCESS EXCLUSIVE on the parent)."""
    advisory, exclusive = _templates.render(_DIALECT, "partition_lock",
                                            schema_literal=_literal(schema),
                                            audit_table=_names(schema)["audit_table"])
    return advisory, exclusive


def take_lock(connection: Connection, schema: str) -> None:
    """Hold this schema's partition lock (the advisory lock of :func:`lock_statements`)
    until the transaction ends: the first lock a seal or a prune takes, so every path
    that also takes the seal lock takes this one first. It waits in the server, so
    the caller's lock_timeout and statement_timeout apply and a cycle through the
    log is found by the deadlock detector (one side fails at once with
    deadlock_detected) instead of hanging."""
    advisory, _ = lock_statements(schema)
    _run(connection, [advisory])


def create_statements(schema: str, by: str, ranges: list[tuple[datetime, datetime]],
                      sequence: Optional[str] = None) -> list[str]:
    """Everything that creates a partitioned log: sequence (unless an existing one,
    qualified, is given), parent, indexes, guards, DEFAULT partition and the
    ``ranges`` partitions."""
    from .dialects import module_for
    from .schema import audit_table

    dialect = _dialect()
    table = partitioned_table(schema, sequence)
    statements = [] if sequence else [f"CREATE SEQUENCE {_qualified(schema, SEQUENCE)}"]
    sequence = sequence or _qualified(schema, SEQUENCE)
    statements += [str(CreateTable(table).compile(dialect=dialect)).strip(),
                  str(SetTableComment(table).compile(dialect=dialect)),
                  f"ALTER SEQUENCE {sequence} OWNED BY {_names(schema)['audit_table']}.id"]
    # the same index definitions as a plain log (they cascade to every partition)
    base = audit_table(MetaData(schema=schema))
    for index in sorted(base.indexes, key=lambda i: str(i.name)):
        statements.append(str(CreateIndex(index).compile(dialect=dialect)))
    statements += module_for(_DIALECT).protect_statements(MetaData(schema=schema), dialect, schema)
    statements += default_statements(schema, by)
    for start, end in ranges:
        statements += range_statements(schema, start, end)
    return statements


# ---------------------------------------------------------------- running


def _run(connection: Connection, statements: Any) -> None:
    from .ddl import _AuditDDL

    for sql in statements:
        connection.execute(_AuditDDL(sql))


def _schema(connection: Connection, metadata: Optional[MetaData] = None) -> str:
    from ._installed import default_schema

    if metadata is not None and metadata.schema:
        return metadata.schema
    return str(default_schema(connection))


def create_log(connection: Connection, partition_by: Optional[str], ahead: int,
               metadata: Optional[MetaData]) -> bool:
    """Body of :func:`sqlaudit.ddl.create_audit_log`; True when it created the log."""
    from .ddl import _protect, _upgrade_audit_table
    from .schema import audit_table

    if partition_by is not None:
        require_postgresql(connection, f"create_audit_log(partition_by={partition_by!r})",
                           ": leave partition_by unset (None) there")
    if connection.dialect.name != "postgresql":
        from sqlalchemy import inspect as sa_inspect

        plain = audit_table(MetaData())
        existed = sa_inspect(connection).has_table(AUDIT_TABLE_NAME)
        plain.create(connection, checkfirst=True)
        _upgrade_audit_table(connection, plain)
        _protect(connection, plain.metadata)
        return not existed
    schema = _schema(connection, metadata)
    layout = read_layout(connection, schema)
    if layout is not None:
        # an existing log is used as it is: never converted behind the caller's back
        if partition_by is not None and not layout.partitioned:
            raise SQLAuditError(
                f"{schema}.sqlaudit_log already exists as one table, so "
                f"create_audit_log(partition_by={partition_by!r}) cannot partition it; convert it "
                f"with sqlaudit.ddl.partition_audit_log(engine, by={partition_by!r}) or the Alembic "
                f"operation op.partition_audit_log(by={partition_by!r}).")
        _protect(connection, MetaData(schema=schema))
        return False
    if partition_by is None:
        plain = audit_table(MetaData(schema=schema))
        plain.create(connection)
        _protect(connection, plain.metadata)
        return True
    advisory, _ = lock_statements(schema)
    _run(connection, [advisory])
    now = connection.execute(text("SELECT now()")).scalar_one()
    _run(connection, create_statements(schema, partition_by, wanted_ranges(now, partition_by, ahead)))
    return True


@dataclasses.dataclass(frozen=True)
class PartitionMaintenance:
    """What :func:`sqlaudit.ddl.maintain_audit_partitions` did."""

    #: partitions created, oldest first
    created: list[str]
    #: rows moved out of the DEFAULT partition into the created partitions' ranges
    moved_rows: int
    #: partitions that lacked their TRUNCATE guard and got it
    guarded: list[str]
    #: past periods whose rows still wait in DEFAULT for a later run (a run gives
    #: at most :data:`PAST_PERIODS_PER_RUN` of them their partitions, oldest first)
    waiting: int = 0


def _partitioned_layout(connection: Connection, schema: str, what: str) -> Layout:
    layout = read_layout(connection, schema)
    if layout is None:
        raise SQLAuditTableNotInDatabaseError(
            f"{what}: there is no sqlaudit_log in schema {schema!r}; create it with "
            f"sqlaudit.ddl.create_audit_log(engine, partition_by='month').")
    if not layout.partitioned:
        raise SQLAuditError(
            f"{what}: {schema}.sqlaudit_log is one table, not partitioned; convert it with "
            f"sqlaudit.ddl.partition_audit_log(engine, by='month') (or op.partition_audit_log).")
    return layout


def maintain(connection: Connection, ahead: int, policy: Optional["LockPolicy"] = None,
             metadata: Optional[MetaData] = None) -> PartitionMaintenance:
    """Body of :func:`sqlaudit.ddl.maintain_audit_partitions`.

    One attempt, in a savepoint with lock_timeout set, takes the partition lock,
    reads the layout, and creates what is missing under ACCESS EXCLUSIVE; an
    attempt that times out or is chosen as a deadlock victim is undone with every
    lock it took (the partition lock too) and retried, so a prune or seal that
    holds the log and waits for the partition lock gets through."""
    require_postgresql(connection, "maintain_audit_partitions()",
                       " to maintain: do not schedule this command for it")
    schema = _schema(connection, metadata)
    advisory, exclusive = lock_statements(schema)

    def attempt() -> tuple[Layout, list[tuple[datetime, datetime]], int, int]:
        _run(connection, [advisory])  # one maintainer (or pruner, or converter) at a time
        layout = _partitioned_layout(connection, schema, "maintain_audit_partitions()")
        by = layout.by
        if by is None:
            raise SQLAuditError(
                f"maintain_audit_partitions(): cannot tell the period of {schema}.sqlaudit_log (its "
                f"DEFAULT partition has no '{MARK}...' comment and no range is a day, week or month); "
                f"set it with COMMENT ON TABLE {schema}.{DEFAULT_PARTITION} IS '{MARK}month'.")
        now = connection.execute(text("SELECT now()")).scalar_one()

        def absent(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
            return [(s, e) for s, e in ranges if not any(p.overlaps(s, e) for p in layout.partitions)]

        past = absent(_past_periods_in_default(connection, schema, layout, by, now))
        missing = past[:PAST_PERIODS_PER_RUN] + absent(wanted_ranges(now, by, ahead))
        waiting = max(0, len(past) - PAST_PERIODS_PER_RUN)
        if not missing:
            return layout, missing, 0, waiting
        _run(connection, [exclusive])
        if layout.default is not None and _default_holds(connection, schema, missing):
            return layout, missing, _move_default(connection, schema, by, missing), waiting
        if layout.default is None:  # a hand-made layout: give it its safety net
            _run(connection, default_statements(schema, by))
        for start, end in missing:
            _run(connection, range_statements(schema, start, end))
        return layout, missing, 0, waiting

    layout, missing, moved, waiting = in_savepoint_with_timeout(
        connection, policy or LockPolicy(), "new partitions", attempt, "maintain_audit_partitions()",
        retry_deadlock=True)
    unguarded = [p.name for p in layout.partitions if not p.guarded]
    for name in unguarded:
        _run(connection, protect_partition_statements(schema, name))
    return PartitionMaintenance([partition_name(s) for s, _ in missing], moved, unguarded, waiting)


def _past_periods_in_default(connection: Connection, schema: str, layout: Layout, by: str,
                             now: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) of each past period that rows in DEFAULT belong to."""
    if layout.default is None:
        return []
    (sql,) = _templates.render(_DIALECT, "partition_default_periods",
                               partition=_qualified(schema, DEFAULT_PARTITION), period=_literal(by))
    starts = connection.execute(text(sql), {"current": period_start(now, by)}).scalars()
    return [(start, next_start(start, by))
            for start in (s.replace(tzinfo=timezone.utc) for s in starts)]


def _default_holds(connection: Connection, schema: str,
                   ranges: list[tuple[datetime, datetime]]) -> bool:
    default = _qualified(schema, DEFAULT_PARTITION)
    conditions = " OR ".join(f"(changed_at >= :s{i} AND changed_at < :e{i})"
                             for i in range(len(ranges)))
    params: dict[str, Any] = {}
    for i, (s, e) in enumerate(ranges):
        params[f"s{i}"], params[f"e{i}"] = s, e
    return bool(connection.execute(
        text(f"SELECT EXISTS (SELECT 1 FROM {default} WHERE {conditions})"), params).scalar())


def _columns(connection: Connection, schema: str) -> str:
    prep = _dialect().identifier_preparer
    names = connection.execute(text(
        "SELECT a.attname FROM pg_catalog.pg_attribute AS a "
        "WHERE a.attrelid = to_regclass(:rel) AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum"), {"rel": _names(schema)["audit_table"]}).scalars().all()
    return ", ".join(prep.quote(n) for n in names)


def move_statements(schema: str, by: str, ranges: list[tuple[datetime, datetime]],
                    columns: str, aside_name: str) -> list[str]:
    """Detach DEFAULT, set it aside, create ``ranges`` and a new DEFAULT, re-insert, drop."""
    names = _names(schema)
    statements = _templates.render(_DIALECT, "partition_move", audit_table=names["audit_table"],
                                   partition=_qualified(schema, DEFAULT_PARTITION),
                                   aside_name=_dialect().identifier_preparer.quote(aside_name))
    for start, end in ranges:
        statements += range_statements(schema, start, end)
    statements += default_statements(schema, by)
    statements += _templates.render(_DIALECT, "partition_refill", audit_table=names["audit_table"],
                                    columns=columns, aside=_qualified(schema, aside_name))
    return statements


def _move_default(connection: Connection, schema: str, by: str,
                  ranges: list[tuple[datetime, datetime]]) -> int:
    default = _qualified(schema, DEFAULT_PARTITION)
    count = text(f"SELECT count(*) FROM {default}")
    before = int(connection.execute(count).scalar_one())
    _run(connection, move_statements(schema, by, ranges, _columns(connection, schema),
                                     f"{DEFAULT_PARTITION}_moving"))
    return before - int(connection.execute(count).scalar_one())  # the rows that left DEFAULT


# ---------------------------------------------------------------- pruning


def prune_remover(connection: Connection, log_table: Table, bound: datetime,
                  remove: Callable[[Any], int],
                  archive: Optional[Callable[[Any], Any]] = None,
                  policy: Optional["LockPolicy"] = None,
                  whole_log: bool = True) -> Callable[[Any], int]:
    """``remove`` itself for a plain log; for a partitioned one, a remover that drops
    every range partition ending at or before ``bound`` whose rows all match the
    prune's condition (counting them), then DELETEs what else matches (in the
    boundary partitions and DEFAULT: the planner prunes the rest). ``archive``
    (``prune_audit_log(export_to=...)``) is given each whole partition's rows
    before the partition is dropped. ``whole_log``: the prune removes every record
    before ``bound`` (no ``models=``), so every partition wholly before it is
    dropped, and more than :data:`DROPS_PER_PRUNE` of them are refused up front."""
    if connection.dialect.name != "postgresql" or log_table.schema is None:
        return remove
    schema = log_table.schema
    layout = read_layout(connection, schema)
    if layout is None or not layout.partitioned:
        return remove
    _, exclusive = lock_statements(schema)
    # Now, before the prune seals the log: the partition lock comes before the seal
    # lock on every path (integrity's serialise takes it again, re-entrant).
    take_lock(connection, schema)
    whole = [p for p in (read_layout(connection, schema) or layout).ranges
             if p.end is not None and p.end <= bound]
    if whole_log and len(whole) > DROPS_PER_PRUNE:
        step = whole[DROPS_PER_PRUNE - 1].end
        assert step is not None
        raise SQLAuditError(
            f"prune_audit_log(): {len(whole)} partitions of {schema}.sqlaudit_log lie wholly "
            f"before the cutoff; dropping more than {DROPS_PER_PRUNE} in one transaction can "
            f"exhaust PostgreSQL's lock table (max_locks_per_transaction), so nothing was "
            f"pruned: prune in steps, first with older_than={step.isoformat()}.")

    def remover(condition: Any) -> int:  # the layout read above holds: the partition lock is ours
        dropped = 0
        if whole:
            # Lock before counting: a writer still in flight commits before the lock is
            # ours, so the count below sees its row (above the sealed head, so not
            # matching) and that partition is kept, never dropped with the row unseen.
            in_savepoint_with_timeout(connection, policy or LockPolicy(), "the partitions to drop",
                                      lambda: _run(connection, [exclusive]), "prune_audit_log()")
        for p in whole:
            in_range = log_table.c.changed_at < p.end
            if p.start is not None:
                in_range = and_(log_table.c.changed_at >= p.start, in_range)
            matching, total = connection.execute(
                select(func.count().filter(condition), func.count())
                .select_from(log_table).where(in_range)).one()
            if matching != total:
                continue  # rows not removed by this prune (other tables, or not sealed yet)
            if archive is not None:
                archive(in_range)
            _run(connection, _templates.render(_DIALECT, "partition_drop",
                                               audit_table=_names(schema)["audit_table"],
                                               partition=_qualified(schema, p.name)))
            dropped += int(total)
        return dropped + remove(condition)

    return remover



# ---------------------------------------------------------------- Alembic


def forget_partitions(connection: Connection, upgrade_ops: Any) -> None:
    """Autogenerate: the partitions of ``sqlaudit_log`` are in no MetaData, so Alembic
    proposes dropping them and their indexes; remove those proposals (the log
    itself, with its columns and indexes, is compared as usual)."""
    if connection.dialect.name != "postgresql":
        return
    from alembic.operations import ops as alembic_ops

    default = _schema(connection)
    found: dict[str, set[str]] = {}

    def is_partition(op: Any) -> bool:
        # the table's drop, and the drops of the indexes PostgreSQL made for it
        if not isinstance(op, (alembic_ops.DropTableOp, alembic_ops.ModifyTableOps)):
            return False
        schema = op.schema or default
        if schema not in found:
            found[schema] = partition_names(connection, schema)
        return op.table_name in found[schema]

    upgrade_ops.ops[:] = [op for op in upgrade_ops.ops if not is_partition(op)]


# ---------------------------------------------------------------- converting a plain log

#: The CHECK constraint and unique index a conversion builds before its swap.
CHECK_NAME = f"{AUDIT_TABLE_NAME}_partition_bound"
KEY_INDEX = f"{AUDIT_TABLE_NAME}_partition_key"
#: The swap must happen before the boundary: it is at least this far from the start.
MARGIN = timedelta(hours=1)


def conversion_boundary(now: datetime, by: str) -> datetime:
    """Where the old log's partition ends: the next period start at least
    :data:`MARGIN` away (writes keep landing in the old log until then)."""
    boundary = next_start(period_start(now, by), by)
    if boundary - now < MARGIN:
        boundary = next_start(boundary, by)
    return boundary


def history_name(boundary: datetime) -> str:
    return f"{AUDIT_TABLE_NAME}_until_{boundary.astimezone(timezone.utc):%Y%m%d}"


def _fit(name: str) -> str:
    import hashlib

    if len(name.encode()) <= 63:
        return name
    return name[:54] + "_" + hashlib.sha1(name.encode()).hexdigest()[:8]


def prepare_statements(schema: str, boundary: datetime) -> list[str]:
    prep = _dialect().identifier_preparer
    return _templates.render(_DIALECT, "partition_convert_prepare",
                             audit_table=_names(schema)["audit_table"],
                             check_name=prep.quote(CHECK_NAME), boundary=_ts(boundary),
                             key_index=prep.quote(KEY_INDEX))


def swap_statements(schema: str, by: str, ahead: int, boundary: datetime, pk_name: str,
                    indexes: list[str], sequence: str) -> list[str]:
    """The swap transaction's statements (after partition_lock.sql)."""
    prep = _dialect().identifier_preparer
    log, history = _names(schema)["audit_table"], history_name(boundary)
    statements = _templates.render(
        _DIALECT, "partition_convert_swap", audit_table=log, pk_name=prep.quote(pk_name),
        history_pkey=prep.quote(_fit(f"{history}_pkey")), key_index=prep.quote(KEY_INDEX),
        history_name=prep.quote(history))
    # the plain log's index names pass to the parent's indexes
    for index in indexes:
        suffix = index[len("ix_sqlaudit_log_"):] if index.startswith("ix_sqlaudit_log_") else index
        statements.append(f"ALTER INDEX {_qualified(schema, index)} RENAME TO "
                          f"{prep.quote(_fit(f'{history}_{suffix}'))}")
    statements += create_statements(schema, by, wanted_ranges(boundary, by, ahead), sequence)
    statements += _templates.render(_DIALECT, "partition_convert_attach", audit_table=log,
                                    history=_qualified(schema, history), boundary=_ts(boundary),
                                    check_name=prep.quote(CHECK_NAME))
    statements += protect_partition_statements(schema, history)
    return statements


@dataclasses.dataclass(frozen=True)
class LockPolicy:
    """How a conversion asks for ``ACCESS EXCLUSIVE`` on the log: it waits at most
    ``timeout`` seconds per attempt (writers arriving meanwhile queue behind the
    request, so they wait no longer either), pauses ``pause`` s, and gives up
    (nothing changed) after ``attempts`` attempts."""

    timeout: float = 2.0
    attempts: int = 10
    pause: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)):
            raise SQLAuditArgumentTypeError(f"lock_timeout must be a number of seconds, got {self.timeout!r}")
        if not 0.01 <= self.timeout <= 600:
            raise SQLAuditArgumentError(f"lock_timeout must be between 0.01 and 600 seconds, got {self.timeout}")
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise SQLAuditArgumentTypeError(f"attempts must be an int, got {self.attempts!r}")
        if not 1 <= self.attempts <= 1000:
            raise SQLAuditArgumentError(f"attempts must be between 1 and 1000, got {self.attempts}")

    @property
    def setting(self) -> str:
        return f"{max(1, round(self.timeout * 1000))}ms"


def _sqlstate(exc: BaseException) -> Optional[str]:
    return getattr(getattr(exc, "orig", None), "sqlstate", None)


def _lock_refused(exc: BaseException) -> bool:
    """lock_not_available: lock_timeout expired."""
    return _sqlstate(exc) == "55P03"


def _gave_up(policy: LockPolicy, what: str, caller: str = "partition_audit_log()") -> SQLAuditError:
    outcome = {"prune_audit_log()": "nothing was pruned",
               "maintain_audit_partitions()": "no partition was created"}.get(
                   caller, "nothing was changed by this step")
    return SQLAuditError(
        f"{caller}: could not lock sqlaudit_log for {what} within "
        f"{policy.timeout:g} s, {policy.attempts} times (a long transaction holds a lock on "
        f"it; pg_locks shows which); {outcome}: run it again later, "
        f"or with a larger lock_timeout or more attempts.")


def _autocommit_with_timeout(connection: Connection, policy: LockPolicy, what: str,
                             statements: list[str]) -> None:
    """Run ``statements`` (autocommit) with lock_timeout set, retrying when it expires."""
    import time

    from sqlalchemy.exc import DBAPIError

    old = connection.execute(text("SELECT current_setting('lock_timeout')")).scalar_one()
    try:
        connection.execute(text("SELECT set_config('lock_timeout', :v, false)"),
                           {"v": policy.setting})
        for attempt in range(policy.attempts):
            try:
                _run(connection, statements)
                return
            except DBAPIError as exc:
                if not _lock_refused(exc):
                    raise
                if attempt + 1 < policy.attempts:
                    time.sleep(policy.pause)
        raise _gave_up(policy, what)
    finally:
        connection.execute(text("SELECT set_config('lock_timeout', :v, false)"), {"v": old})


def prepare(connection: Connection, by: str,
            policy: LockPolicy = LockPolicy()) -> Optional[datetime]:
    """First phase of a conversion, on a connection in AUTOCOMMIT mode; the
    boundary, or None when the log is partitioned already."""
    require_postgresql(connection, f"partition_audit_log(by={by!r})")
    schema = _schema(connection)
    layout = read_layout(connection, schema)
    if layout is None:
        raise SQLAuditTableNotInDatabaseError(
            f"partition_audit_log(): there is no sqlaudit_log in schema {schema!r}; create a "
            f"partitioned one with sqlaudit.ddl.create_audit_log(engine, partition_by={by!r}).")
    if layout.partitioned:
        return None
    boundary = conversion_boundary(connection.execute(text("SELECT now()")).scalar_one(), by)
    key = _qualified(schema, KEY_INDEX)
    valid = connection.execute(text(
        "SELECT i.indisvalid FROM pg_catalog.pg_index AS i WHERE i.indexrelid = to_regclass(:ix)"),
        {"ix": key}).scalar()
    if valid is False:  # left by an interrupted earlier run
        _run(connection, [f"DROP INDEX CONCURRENTLY {key}"])
    statements = prepare_statements(schema, boundary)
    # the two ALTERs that take ACCESS EXCLUSIVE (for an instant) wait at most lock_timeout
    _autocommit_with_timeout(connection, policy, "its CHECK constraint", statements[:2])
    _run(connection, statements[2:])
    return boundary


def swap(connection: Connection, by: str, ahead: int, boundary: datetime,
         policy: LockPolicy = LockPolicy()) -> bool:
    """Second phase of a conversion, in a transaction: each attempt runs in a
    savepoint with lock_timeout set, so an attempt that cannot get its lock in
    time is undone and retried. False if another run converted the log."""
    return bool(in_savepoint_with_timeout(connection, policy, "the swap",
                                          lambda: _swap(connection, by, ahead, boundary),
                                          retry_deadlock=True))


def in_savepoint_with_timeout(connection: Connection, policy: LockPolicy, what: str,
                              work: Callable[[], Any], caller: str = "partition_audit_log()",
                              retry_deadlock: bool = False) -> Any:
    """``work()`` in a savepoint with lock_timeout set; an attempt whose lock wait
    times out is rolled back and retried after a pause, ``policy.attempts`` times.
    ``retry_deadlock``: an attempt chosen as a deadlock victim is retried too; only
    sound when ``work()`` takes every lock of the cycle inside the savepoint (the
    rollback then releases them), else each retry would rebuild the same cycle."""
    import time

    from sqlalchemy.exc import DBAPIError

    old = connection.execute(text("SELECT current_setting('lock_timeout')")).scalar_one()
    deadlocked = False
    for attempt in range(policy.attempts):
        try:
            with connection.begin_nested():
                connection.execute(text("SELECT set_config('lock_timeout', :v, true)"),
                                   {"v": policy.setting})
                result = work()
                connection.execute(text("SELECT set_config('lock_timeout', :v, true)"), {"v": old})
            return result
        except DBAPIError as exc:
            deadlocked = retry_deadlock and _sqlstate(exc) == "40P01"
            if not (_lock_refused(exc) or deadlocked):
                raise
            if attempt + 1 < policy.attempts:
                time.sleep(policy.pause)
    if deadlocked:  # the cycle holds a lock this transaction took before the savepoint
        raise SQLAuditError(
            f"{caller}: {what}: the last of {policy.attempts} attempts was ended by PostgreSQL's "
            f"deadlock detector (this transaction holds a lock another one waits for, taken "
            f"before the call): nothing was changed by this step; call it in a transaction of "
            f"its own (pass an Engine).")
    raise _gave_up(policy, what, caller)


def _swap(connection: Connection, by: str, ahead: int, boundary: datetime) -> bool:
    schema = _schema(connection)
    _run(connection, lock_statements(schema))
    layout = read_layout(connection, schema)
    if layout is not None and layout.partitioned:
        return False
    log = _names(schema)["audit_table"]
    if connection.execute(text("SELECT clock_timestamp() >= :b"), {"b": boundary}).scalar():
        raise SQLAuditError(
            f"partition_audit_log(): the boundary {boundary.isoformat()} passed before the swap "
            f"(the preparation took too long); nothing was changed: run it again.")
    catalog = connection.execute(text(
        "SELECT (SELECT conname FROM pg_catalog.pg_constraint WHERE conrelid = to_regclass(:log) "
        "        AND contype = 'p') AS pk, "
        "       (SELECT convalidated FROM pg_catalog.pg_constraint WHERE conrelid = to_regclass(:log) "
        "        AND conname = :check) AS checked, "
        "       (SELECT indisvalid FROM pg_catalog.pg_index WHERE indexrelid = to_regclass(:key)) AS keyed, "
        "       pg_catalog.pg_get_serial_sequence(:log, 'id') AS sequence"),
        {"log": log, "check": CHECK_NAME, "key": _qualified(schema, KEY_INDEX)}).one()
    if not (catalog.pk and catalog.checked and catalog.keyed and catalog.sequence):
        raise SQLAuditError(
            f"partition_audit_log(): {schema}.sqlaudit_log is not prepared (primary key "
            f"{catalog.pk!r}, bound constraint validated: {catalog.checked}, key index valid: "
            f"{catalog.keyed}, id sequence {catalog.sequence!r}); nothing was changed: run "
            f"partition_audit_log() again, which prepares it first.")
    indexes = connection.execute(text(
        "SELECT c.relname FROM pg_catalog.pg_index AS i JOIN pg_catalog.pg_class AS c "
        "ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass(:log) AND NOT i.indisprimary "
        "AND c.relname <> :key ORDER BY c.relname"), {"log": log, "key": KEY_INDEX}).scalars().all()
    _run(connection, swap_statements(schema, by, ahead, boundary, str(catalog.pk), list(indexes),
                                     str(catalog.sequence)))
    return True


def conversion_lock_statements(schema: str) -> tuple[str, str]:
    """(take, release) the session-level lock that serialises conversions of ``schema``."""
    take, release = _templates.render(_DIALECT, "partition_convert_lock",
                                      schema_literal=_literal(schema))
    return take, release


def take_conversion_lock(connection: Connection, take: str, pause: float = 0.2) -> None:
    """Poll for the conversion lock (see partition_convert_lock.sql) until it is ours."""
    import time

    from .ddl import _AuditDDL

    while not connection.execute(_AuditDDL(take)).scalar():
        time.sleep(pause)


def convert(engine: Any, by: str, ahead: int, policy: LockPolicy = LockPolicy()) -> bool:
    """:func:`sqlaudit.ddl.partition_audit_log` on an Engine: prepare in autocommit,
    then swap in one transaction, holding the conversion lock throughout. True
    when this call converted the log."""
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        require_postgresql(connection, f"partition_audit_log(by={by!r})")
        take, release = conversion_lock_statements(_schema(connection))
        take_conversion_lock(connection, take)
        try:
            boundary = prepare(connection, by, policy)
            if boundary is None:
                return False
            with engine.begin() as swapping:
                return swap(swapping, by, ahead, boundary, policy)
        finally:
            _run(connection, [release])
