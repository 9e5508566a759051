"""``PostgresStore.write_batch``: COPY the new rows, fall back to staged ON CONFLICT, then the rollups.

One transaction per batch:

1. impressions and clicks: one probe of their primary keys, then the rows not stored yet are ``COPY``ed straight
   into the tables in key order, inside a savepoint (``StagedWriter._copy_direct``); when another replica commits
   one of the same keys meanwhile, the savepoint is rolled back and they take the staged path below. Audit
   entries and feedback (and impressions and clicks after that fallback) are ``COPY``ed into a session-local
   staging table and moved with ``INSERT ... SELECT ... ORDER BY key ON CONFLICT DO NOTHING`` (two replicas'
   batches take row locks in key order, so they do not deadlock); the impressions INSERT returns the rows it
   stored (a staged duplicate with other content is not the stored one), with the text of their fingerprints
   as the database renders it;
2. under the maintenance advisory lock (one replica at a time, so each plan sees every other replica's
   committed batch: a click committed by one replica while another stores its impression is counted by
   whichever of the two maintains second), ``rollup_write.plan_maintenance`` is computed from the stored facts
   and clicks of the touched impressions and applied with array parameters (``unnest``): facts COPYed in,
   click summaries updated, additive ``unit_rollup`` and ``fingerprint_rollup`` upserts in key order.

The lock is held only from step 2 to the commit; the raw inserts of several replicas run concurrently.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import psycopg

from abharness.stores import codec, rollup, rollup_write
from abharness.stores.schema import LATEST_VERSION

__all__ = ["ROLLUP_LOCK_KEY", "StagedWriter"]

ROLLUP_LOCK_KEY = 7_316_420_519  # serialises rollup maintenance across replicas

# (table, columns, conflict key ordering)
_TABLES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("impressions", codec.IMPRESSION_COLUMNS, "impression_id"),
    ("clicks", codec.CLICK_COLUMNS, "impression_id, doc_id"),
    ("audit", codec.AUDIT_COLUMNS, "entry_key"),
    ("feedback", codec.FEEDBACK_COLUMNS, "impression_id, kind, doc_id"),
)
# The stored impressions, in the positions of ``codec.impression_row`` that the facts and fingerprints read.
_RETURNING = (" RETURNING impression_id, experiment_id, ts, unit_id, arm, mode, k, CAST(fingerprints AS TEXT), "
              "latency_ms, fallback, has_error")
_FACTS_OF = (f"SELECT {', '.join(rollup_write.FACT_COLUMNS)} FROM impression_facts "
             "WHERE impression_id = ANY(%s) ORDER BY impression_id")
_CLICKS_OF = "SELECT impression_id, experiment_id, ts, position FROM clicks WHERE impression_id = ANY(%s)"
_V = LATEST_VERSION
# Staging tables of the derived rows: COPY (psycopg's C row writer) is much cheaper than array parameters.
_DERIVED_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS stage_unit_rollup_v{_V} ON COMMIT DELETE ROWS AS "
    f"SELECT {', '.join(rollup_write.ROLLUP_COLUMNS)} FROM unit_rollup WITH NO DATA",
)
_UPDATE_FACT = ("UPDATE impression_facts SET n_clicks = %s, first_click_ts = %s, first_click_position = %s, "
                "min_click_position = %s WHERE impression_id = %s")
_UPSERT_ROLLUP = (
    f"INSERT INTO unit_rollup ({', '.join(rollup_write.ROLLUP_COLUMNS)}) SELECT * FROM stage_unit_rollup_v{_V} "
    "ORDER BY experiment_id, mode, unit_id, arm, bucket ON CONFLICT (experiment_id, mode, unit_id, arm, bucket) "
    "DO UPDATE SET " + ", ".join(f"{c} = unit_rollup.{c} + excluded.{c}" for c in rollup_write.SUM_COLUMNS)
    + ", first_ts = LEAST(unit_rollup.first_ts, excluded.first_ts), "
    "last_ts = GREATEST(unit_rollup.last_ts, excluded.last_ts)"
)
# The direct path (``_copy_direct``): which rows are stored already, and the jsonb rendering of fingerprints.
_DIRECT = frozenset({"impressions", "clicks"})
_STORED_IMPRESSIONS = "SELECT impression_id FROM impressions WHERE impression_id = ANY(%s)"
_STORED_CLICKS = "SELECT impression_id, doc_id FROM clicks WHERE impression_id = ANY(%s)"
_JSONB_TEXT = "SELECT t, CAST(CAST(t AS jsonb) AS TEXT) FROM unnest(CAST(%s AS text[])) AS t"


def _first(row: Sequence[Any]) -> Any:
    return row[0]


def _first_two(row: Sequence[Any]) -> tuple[Any, Any]:
    return (row[0], row[1])


# One row per (experiment, mode, fingerprints, day) of the batch: a handful, cheaper as a pipeline than a COPY.
_UPSERT_FINGERPRINTS = rollup.fingerprint_statement("postgresql")


def _copy(cur: psycopg.Cursor[Any], table: str, columns: Sequence[str] | None, rows: Sequence[Sequence[Any]]) -> None:
    cols = f" ({', '.join(columns)})" if columns else ""
    with cur.copy(f"COPY {table}{cols} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


class StagedWriter:
    """Writes batches on connections of one pool; remembers which connections have their staging tables."""

    def __init__(self) -> None:
        self._staged: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        #: fingerprints JSON text as encoded -> the same value as the server renders its jsonb (the text
        #: ``fingerprint_rollup`` is keyed by); a handful of distinct values per deployment
        self._fp_text: dict[str, str] = {}

    def _ensure_staging(self, conn: psycopg.Connection[Any]) -> None:
        if conn in self._staged:
            return
        for table, columns, _ in _TABLES:
            # Column types only: no defaults (audit.id's would tie the temp table to the schema's sequence) and
            # no constraints (the INSERT into the real table checks them, inside the same transaction).
            conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS stage_{table}_v{LATEST_VERSION} ON COMMIT DELETE ROWS "
                f"AS SELECT {', '.join(columns)} FROM {table} WITH NO DATA"
            )
        for statement in _DERIVED_STAGING:
            conn.execute(statement)
        conn.commit()  # the temp tables must outlive a rolled-back batch
        self._staged.add(conn)

    def write(self, conn: psycopg.Connection[Any], rows: codec.BatchRows) -> int:
        """Store ``rows`` in one transaction on ``conn``; returns the number of rows newly stored."""
        stored = 0
        new_imps: list[tuple[Any, ...]] = []
        self._ensure_staging(conn)
        tables = {"impressions": rows.impressions, "clicks": rows.clicks, "audit": rows.audit,
                  "feedback": rows.feedback}
        with conn.transaction(), conn.cursor() as cur:
            direct = self._copy_direct(cur, rows.impressions, rows.clicks)
            if direct is not None:
                new_imps, n_clicks = direct
                stored += len(new_imps) + n_clicks
            for table, columns, key in _TABLES:
                if not tables[table] or (direct is not None and table in _DIRECT):
                    continue
                cols = ", ".join(columns)
                stage = f"stage_{table}_v{LATEST_VERSION}"
                with cur.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
                    for row in tables[table]:
                        copy.write_row(row)
                returning = _RETURNING if table == "impressions" else ""
                cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ORDER BY {key} "
                            "ON CONFLICT DO NOTHING" + returning)
                stored += max(0, cur.rowcount)
                if returning:
                    # (id, exp, ts, unit, arm, mode, k, fingerprints, latency, fallback, has_error) laid out as
                    # codec.impression_row positions 0-5, 7, 9, 10, 11, 15
                    new_imps = [(r[0], r[1], r[2], r[3], r[4], r[5], None, r[6], None, r[7], r[8], r[9], None,
                                 None, None, r[10]) for r in cur.fetchall()]
            if rows.dwells:  # a dwell signal fills the dwell time of a click stored without one
                cur.executemany(
                    "UPDATE clicks SET dwell_ms = %s WHERE impression_id = %s AND doc_id = %s AND dwell_ms IS NULL",
                    rows.dwells,
                )
            if new_imps or rows.clicks:
                self._maintain(cur, new_imps, rows.clicks)
        return stored

    def _copy_direct(
        self, cur: psycopg.Cursor[Any], imps: list[tuple[Any, ...]], clicks: list[tuple[Any, ...]]
    ) -> tuple[list[tuple[Any, ...]], int] | None:
        """COPY the batch's impressions and clicks straight into their tables, without the ones already stored
        (one probe of each primary key) or repeated within the batch (the first one is kept).

        Staging and moving every row costs about twice a COPY (measured below in docs/storage.md). The probe
        cannot see another replica's *uncommitted* rows: COPY then waits for that transaction and, if it
        commits, fails on the primary key. That failure is confined to a savepoint and the caller falls back to
        the staged ``INSERT ... ON CONFLICT DO NOTHING`` path (returns None): duplicates are still ignored, never
        an error. Rows are COPYed in key order, so two replicas wait on each other's keys in one order.

        Returns (the stored impressions as ``codec.impression_row`` tuples, their fingerprints in the jsonb's
        own rendering; the number of clicks stored)."""
        if not imps and not clicks:
            return [], 0
        conn = cur.connection
        imp_ids = list({r[0] for r in imps})
        click_imps = list({c[0] for c in clicks})
        fps = [t for t in {r[9] for r in imps} if t not in self._fp_text]
        with conn.pipeline(), conn.cursor() as imp_cur, conn.cursor() as click_cur, conn.cursor() as fp_cur:
            cur.execute("SET LOCAL enable_seqscan = off")  # young tables: seek, never scan (see _maintain)
            if imp_ids:
                imp_cur.execute(_STORED_IMPRESSIONS, (imp_ids,))
            if click_imps:
                click_cur.execute(_STORED_CLICKS, (click_imps,))
            if fps:
                fp_cur.execute(_JSONB_TEXT, (fps,))
            cur.execute("SET LOCAL enable_seqscan = on")
            seen_imps = {r[0] for r in imp_cur.fetchall()} if imp_ids else set()
            seen_clicks = set(click_cur.fetchall()) if click_imps else set()
            if fps:
                if len(self._fp_text) > 4096:
                    self._fp_text.clear()
                self._fp_text.update(fp_cur.fetchall())
        new_imps: list[tuple[Any, ...]] = []
        for r in imps:
            if r[0] not in seen_imps:
                seen_imps.add(r[0])
                new_imps.append(r)
        new_clicks: list[tuple[Any, ...]] = []
        for c in clicks:
            key = (c[0], c[1])
            if key not in seen_clicks:
                seen_clicks.add(key)
                new_clicks.append(c)
        new_imps.sort(key=_first)
        new_clicks.sort(key=_first_two)
        try:
            with conn.transaction():  # a savepoint: a concurrent replica's duplicate undoes only this part
                if new_imps:
                    _copy(cur, "impressions", codec.IMPRESSION_COLUMNS, new_imps)
                if new_clicks:
                    _copy(cur, "clicks", codec.CLICK_COLUMNS, new_clicks)
        except psycopg.errors.UniqueViolation:
            return None
        fp_text = self._fp_text
        return [(*r[:9], fp_text[r[9]], *r[10:]) for r in new_imps], len(new_clicks)

    @staticmethod
    def _maintain(cur: psycopg.Cursor[Any], new_imps: list[tuple[Any, ...]], clicks: list[tuple[Any, ...]]) -> None:
        new_ids = [r[0] for r in new_imps]
        targets = sorted({c[0] for c in clicks} - set(new_ids))
        # The lock and two key lookups in one round trip (a pipeline). The clicks lookup also covers targets that
        # turn out to have no fact (clicks before their impression): the plan ignores those. On a young table
        # (statistics not yet gathered by autovacuum) the planner scans instead of seeking, at a cost growing with
        # the table (measured: 9 ms per batch at 5k clicks), hence no sequential scans for the lookups.
        conn = cur.connection
        with conn.pipeline(), conn.cursor() as facts_cur, conn.cursor() as clicks_cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (ROLLUP_LOCK_KEY,))
            cur.execute("SET LOCAL enable_seqscan = off")
            if targets:
                facts_cur.execute(_FACTS_OF, (targets,))
            clicks_cur.execute(_CLICKS_OF, (new_ids + targets,))
            cur.execute("SET LOCAL enable_seqscan = on")
            old_facts = facts_cur.fetchall() if targets else []
            stored_clicks = clicks_cur.fetchall()
        plan = rollup_write.plan_maintenance(new_imps, old_facts, stored_clicks)
        if plan.facts_insert:
            # New impressions have no fact yet (their ids were just inserted under the primary key).
            _copy(cur, "impression_facts", rollup_write.FACT_COLUMNS, plan.facts_insert)
        if plan.facts_update:  # one primary-key update each, sent in one pipeline
            cur.executemany(_UPDATE_FACT, plan.facts_update)
        if plan.rollup:
            _copy(cur, f"stage_unit_rollup_v{_V}", None, plan.rollup)
            cur.execute(_UPSERT_ROLLUP)
        if new_imps:
            cur.executemany(_UPSERT_FINGERPRINTS, sorted(rollup.fingerprint_rows(new_imps)))

