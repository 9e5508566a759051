"""``SQLiteStore.write_batch``: one ``BEGIN IMMEDIATE`` transaction per batch, raw rows then derived tables.

1. The batch is encoded (``codec.encode_batch``) before the transaction opens.
2. Impressions, clicks, audit entries and feedback are inserted with ``executemany`` and
   ``ON CONFLICT DO NOTHING`` (duplicates by key are counted, NOT NULL violations fail the batch); which
   impressions are new is read first (one probe of the primary key for the batch's ids).
3. The derived tables follow in the same transaction (``rollup_write.plan_maintenance``): facts of the new
   impressions, click summaries of the impressions the batch's clicks point at, additive ``unit_rollup`` upserts,
   ``fingerprint_rollup`` increments.

``BEGIN IMMEDIATE`` serialises writers (threads and processes), so each plan sees every earlier batch.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from abharness.stores import codec, rollup, rollup_write
from abharness.stores.base import WriteResult

__all__ = ["write_batch"]


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    # ON CONFLICT DO NOTHING (not INSERT OR IGNORE): only key conflicts are skipped; a NOT NULL violation fails
    # the batch as it does on PostgreSQL.
    cols = ", ".join(columns)
    return f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' for _ in columns)}) ON CONFLICT DO NOTHING"


_INSERT_IMPRESSION = _insert_sql("impressions", codec.IMPRESSION_COLUMNS)
_INSERT_CLICK = _insert_sql("clicks", codec.CLICK_COLUMNS)
_INSERT_AUDIT = _insert_sql("audit", codec.AUDIT_COLUMNS)
_INSERT_FEEDBACK = _insert_sql("feedback", codec.FEEDBACK_COLUMNS)
# A dwell signal fills the dwell time of its click when the click was stored without one (the browser sends the
# click as the user leaves and the dwell when they come back).
_FILL_DWELL = "UPDATE clicks SET dwell_ms = ? WHERE impression_id = ? AND doc_id = ? AND dwell_ms IS NULL"
_IN_IDS = "IN (SELECT value FROM json_each(?))"
_EXISTING = f"SELECT impression_id FROM impressions WHERE impression_id {_IN_IDS}"
_FACTS_OF = f"SELECT {', '.join(rollup_write.FACT_COLUMNS)} FROM impression_facts WHERE impression_id {_IN_IDS}"
_CLICKS_OF = f"SELECT impression_id, experiment_id, ts, position FROM clicks WHERE impression_id {_IN_IDS}"
_INSERT_FACT = _insert_sql("impression_facts", rollup_write.FACT_COLUMNS)
_UPDATE_FACT = ("UPDATE impression_facts SET n_clicks = ?, first_click_ts = ?, first_click_position = ?, "
                "min_click_position = ? WHERE impression_id = ?")
_UPSERT_ROLLUP = rollup_write.rollup_upsert_sql("sqlite")
_FINGERPRINTS = rollup.fingerprint_statement("sqlite")
_CACHE_SIZE = "PRAGMA cache_size=-65536"  # KiB


def write_batch(conn: sqlite3.Connection, events: Sequence[Any], *, maintain: bool = True) -> WriteResult:
    """Store ``events`` in one transaction on ``conn`` (autocommit mode); duplicates by key are ignored and
    counted. ``maintain``: keep the derived tables (schema >= 5). ``sqlite3.Error`` propagates after rollback."""
    rows = codec.encode_batch(events)
    imps, clicks = rows.impressions, rows.clicks
    # The rollup and facts indexes are keyed by unit: a batch touches pages all over them. SQLite's default page
    # cache (2 MiB) then re-reads them for every batch; 64 MiB keeps them (one run, 50k events in 500-event batches
    # at load ~10: 4.4k -> 5.4k events/s). An upper bound, allocated as pages are used; setting it again is a no-op.
    conn.execute(_CACHE_SIZE)
    try:
        conn.execute("BEGIN IMMEDIATE")
        before = conn.total_changes
        new_imps: list[tuple[Any, ...]] = []
        if imps:
            seen = {r[0] for r in conn.execute(_EXISTING, (json.dumps([r[0] for r in imps]),))}
            for r in imps:
                if r[0] not in seen:
                    seen.add(r[0])
                    new_imps.append(r)
            conn.executemany(_INSERT_IMPRESSION, new_imps)
        if clicks:
            conn.executemany(_INSERT_CLICK, clicks)
        if rows.audit:
            conn.executemany(_INSERT_AUDIT, rows.audit)
        if rows.feedback:
            conn.executemany(_INSERT_FEEDBACK, rows.feedback)
        stored = conn.total_changes - before
        if rows.dwells:
            conn.executemany(_FILL_DWELL, rows.dwells)
        if maintain and (new_imps or clicks):
            _maintain(conn, new_imps, clicks)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return WriteResult(stored=stored, duplicates=len(events) - stored)


def _maintain(conn: sqlite3.Connection, new_imps: list[tuple[Any, ...]], clicks: list[tuple[Any, ...]]) -> None:
    new_ids = {r[0] for r in new_imps}
    targets = sorted({c[0] for c in clicks} - new_ids)
    old_facts = conn.execute(_FACTS_OF, (json.dumps(targets),)).fetchall() if targets else []
    touched = [r[0] for r in new_imps] + [f[0] for f in old_facts]
    stored_clicks = conn.execute(_CLICKS_OF, (json.dumps(touched),)).fetchall() if touched else []
    plan = rollup_write.plan_maintenance(new_imps, old_facts, stored_clicks)
    if plan.facts_insert:
        conn.executemany(_INSERT_FACT, plan.facts_insert)
    if plan.facts_update:
        conn.executemany(_UPDATE_FACT, plan.facts_update)
    if plan.rollup:
        conn.executemany(_UPSERT_ROLLUP, plan.rollup)
    if new_imps:
        conn.executemany(_FINGERPRINTS, rollup.fingerprint_rows(new_imps))
