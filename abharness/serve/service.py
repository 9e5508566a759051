"""The serve use case: route a search to an arm (or interleave / shadow), log the exposure, validate clicks.

No FastAPI here: the routes parse HTTP and call ``ProxyService``; tests can drive it directly. Backends are
synchronous (``SearchBackend.search``) and run in worker threads, at most 64 at once per arm so a hung
treatment cannot starve control of threads (``abharness.serve.workers``). Events go to a non-blocking writer
(``submit`` never waits).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import anyio.to_thread

from abharness.backends.base import SearchBackend
from abharness.config import ExperimentConfig
from abharness.config_layers import is_layered
from abharness.core.assignment import assign
from abharness.core.events import AuditEntry, Click, Event, Feedback, Impression, ShownResult
from abharness.core.hits import Hit
from abharness.core.paging import PageState, ab_page, interleaved_page, query_digest, sign_page
from abharness.core.layers import row_impression_id
from abharness.core.tokens import ImpressionClaims, InvalidToken, check_click, sign, verify
from abharness.errors import BackendError, StoreError
from abharness.observability.metrics import ProxyMetrics
from abharness.serve.layered import LayeredRouter, Routed
from abharness.serve.state import ExperimentState
from abharness.serve.workers import ArmTimeout, ArmWorkers
from abharness.stores.base import EventStore

__all__ = ["ProxyService", "SearchOutcome", "ClickOutcome", "ControlUnavailable", "QueueFull", "Writer"]

log = logging.getLogger(__name__)
FALLBACK_LOG_INTERVAL_S = 10.0  # at most one fallback line per arm per this many seconds (with the count since)


class Writer(Protocol):
    def submit(self, event: Event) -> bool: ...


class ControlUnavailable(BackendError):
    """The control arm failed or timed out: the request cannot be served (HTTP 503)."""

    def __init__(self, message: str, arm: str = "") -> None:
        super().__init__(message)
        self.arm = arm


class QueueFull(StoreError):
    """The event queue is full and the config says to reject rather than drop (HTTP 503)."""


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    impression_id: str
    impression_token: str | None
    arm: str
    mode: str
    fallback: bool
    results: tuple[ShownResult, ...]
    titles: Mapping[str, str]
    offset: int = 0
    has_more: bool = False
    page_token: str | None = None
    enrollments: tuple[tuple[str, str], ...] = ()  # a layered search: (experiment_id, arm) of each row logged


@dataclass(frozen=True, slots=True)
class ClickOutcome:
    impression_id: str
    duplicate: bool


class _SeenClicks:
    """A bounded LRU of (impression_id, doc_id) pairs already accepted by this process (the store dedupes too)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._capacity = capacity

    def add(self, key: tuple[str, str]) -> bool:
        """True when ``key`` is new."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True

    def discard(self, key: tuple[str, str]) -> None:
        self._seen.pop(key, None)


def _audit_key(entry: AuditEntry) -> tuple[Any, ...]:
    import json

    return (entry.ts, entry.actor, entry.action, json.dumps(entry.payload, sort_keys=True, default=str))


class ProxyService:
    """Routes searches and clicks for one experiment."""

    def __init__(
        self,
        config: ExperimentConfig,
        backends: Mapping[str, SearchBackend],
        *,
        state: ExperimentState,
        metrics: ProxyMetrics,
        writer: Writer | None,
        store: EventStore,
        secret: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        missing = [a.name for a in config.arms if a.name not in backends]
        if missing:
            raise BackendError(f"no backend for arms {missing}; every arm in the config needs one")
        self.config = config
        self.backends = dict(backends)
        self.state = state
        self.metrics = metrics
        self.writer = writer
        self.store = store
        self._secret = secret
        self._clock = clock
        self._workers = {name: ArmWorkers(name, limit=64) for name in backends}
        self._audit_keys: set[tuple[Any, ...]] = set()
        self._seen = _SeenClicks()
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._started_at = clock()
        self._last_readiness_details: dict[str, str] = {}
        self._fallback_log: dict[str, tuple[float, int]] = {}  # arm -> (time of the last line, fallbacks since)
        #: Several experiments at once (a layered file): routing, fan-out and lifecycle; None for a single one.
        self.layered = LayeredRouter(config, state) if is_layered(config) else None
        self.sync_metrics()
        self._update_available()

    @property
    def secret(self) -> bytes:
        """The key that signs impression and page tokens."""
        return self._secret

    def now(self) -> float:
        """The service's clock (injectable in tests)."""
        return self._clock()

    # ----------------------------------------------------------------------------------------------- search
    async def _call(self, arm: str, query: str, k: int, timeout_s: float) -> list[Hit]:
        backend = self.backends[arm]
        t0 = time.perf_counter()
        try:
            hits = await self._workers[arm].run(timeout_s, backend.search, [query], k)
        except ArmTimeout:
            self.metrics.search_errors.labels(arm).inc()
            self.metrics.backend_up.labels(arm).set(0)
            raise BackendError(f"arm {arm!r} did not answer within {timeout_s:g} s") from None
        except Exception as exc:  # any backend failure is contained here: it becomes a fallback or a 503
            self.metrics.search_errors.labels(arm).inc()
            self.metrics.backend_up.labels(arm).set(0)
            raise BackendError(f"arm {arm!r} failed: {type(exc).__name__}: {exc}") from exc
        self.metrics.search_latency.labels(arm).observe(time.perf_counter() - t0)
        self.metrics.backend_up.labels(arm).set(1)
        if len(hits) != 1:
            raise BackendError(f"arm {arm!r} returned {len(hits)} result lists for 1 query")
        return hits[0]

    async def _control(self, query: str, k: int) -> list[Hit]:
        control = self.config.control
        try:
            return await self._call(control, query, k, self.config.timeouts.control_s)
        except BackendError as exc:
            raise ControlUnavailable(
                f"the control arm {control!r} could not serve this search ({exc}); retry later", control
            ) from exc

    def _fingerprints(self, *arms: str) -> dict[str, dict[str, str]]:
        return {
            a: {"model": self.backends[a].info.model_fingerprint, "index": self.backends[a].info.index_fingerprint}
            for a in arms
        }

    async def search(
        self, query: str, unit_id: str, k: int | None = None, context: Mapping[str, Any] | None = None, *,
        offset: int = 0, page: PageState | None = None,
    ) -> SearchOutcome:
        """Serve one search for ``unit_id`` according to the mode and the live state.

        ``offset`` > 0 asks for a later page; ``page`` (a verified page token) continues a list from the arm and
        with the seed of its first page (see ``abharness.core.paging``). Positions are absolute.
        Raises ``ControlUnavailable`` when control fails and ``QueueFull`` when the event queue rejects.
        """
        try:
            return await self._search(query, unit_id, k, context, offset, page)
        except ControlUnavailable:
            self.metrics.search_requests.labels(self.config.control, self.config.mode, "error").inc()
            raise

    async def _search(
        self, query: str, unit_id: str, k: int | None, context: Mapping[str, Any] | None, offset: int = 0,
        page: PageState | None = None,
    ) -> SearchOutcome:
        t0 = time.perf_counter()
        cfg, state = self.config, self.state
        routed: Routed | None = None
        if self.layered is not None and not state.routing_to_control:
            routed = self.layered.route(unit_id, context or {}, state.overrides.get(unit_id))
            if routed.k is not None:
                k = routed.k
        k = page.k if page is not None else (k or cfg.k)
        depth = offset + k
        before = page.shown if page is not None else ()
        control = cfg.control
        ctx = dict(context or {})
        impression_id = uuid.uuid4().hex
        seed = page.seed if page is not None else impression_id
        if offset:
            ctx.update(first_impression_id=seed, page_offset=offset)
        titles: dict[str, str] = {}

        def shown(hits: list[Hit], team: str) -> tuple[ShownResult, ...]:
            by_doc = {h.doc_id: h for h in hits}
            for h in hits:
                titles[h.doc_id] = h.title
            docs = ab_page([h.doc_id for h in hits], offset, k, before)
            return tuple(ShownResult(d, offset + i + 1, by_doc[d].score, team) for i, d in enumerate(docs))

        if state.routing_to_control:
            results = shown(await self._control(query, depth), control)
            status = "killed" if state.killed else "paused"
            self.metrics.search_requests.labels(control, "ab", status).inc()
            # Not an experiment exposure: nothing is logged and no token is issued (see docs/proxy.md).
            return SearchOutcome(impression_id, None, control, "ab", False, results, titles,
                                 offset=offset, has_more=len(results) == k)

        mode = cfg.mode
        override = state.overrides.get(unit_id)
        if override is not None:
            ctx["override"] = override
            mode = "ab"
        if page is not None:
            mode = page.mode
        fallback, error, shadow_task = False, None, False
        if mode == "ab":
            if page is not None:
                arm = page.arm
            elif routed is not None:
                arm = routed.backend
            else:
                arm = assign(cfg.salt, unit_id, state.alloc, overrides=state.overrides)
            fingerprint_arms: tuple[str, ...] = (arm,)
            if arm == control:
                results = shown(await self._control(query, depth), arm)
            elif page is not None and page.served == control:  # page 1 fell back: continue control's list
                fallback, error = True, "continues the first page, which fell back to control"
                results = shown(await self._control(query, depth), control)
                fingerprint_arms = (control,)
            else:
                try:
                    results = shown(await self._call(arm, query, depth, cfg.timeouts.treatment_s), arm)
                except BackendError as exc:
                    fallback, error = True, str(exc)
                    self.metrics.fallbacks.labels(arm).inc()
                    self._log_fallback(arm, control, error)
                    results = shown(await self._control(query, depth), control)
                    fingerprint_arms = (control,)
        elif mode == "interleave":
            treatment = cfg.treatments[0]
            arm = "interleaved"
            if page is not None and page.served != "interleaved":
                got: list[Any] = [await self._control(query, depth), BackendError("the first page fell back")]
            else:
                got = list(await asyncio.gather(
                    self._control(query, depth),
                    self._call(treatment, query, depth, cfg.timeouts.treatment_s),
                    return_exceptions=True,
                ))
            c_hits, t_hits = got
            if isinstance(c_hits, BaseException):
                if isinstance(c_hits, ControlUnavailable):
                    raise c_hits
                raise ControlUnavailable(f"the control arm {control!r} failed: {c_hits}", control) from c_hits
            if isinstance(t_hits, BaseException):
                fallback, error = True, str(t_hits)
                self.metrics.fallbacks.labels(treatment).inc()
                self._log_fallback(treatment, control, error)
                results = shown(c_hits, control)
                fingerprint_arms = (control,)
            else:
                by_team = {control: {h.doc_id: h for h in c_hits}, treatment: {h.doc_id: h for h in t_hits}}
                merged = interleaved_page(
                    {control: [h.doc_id for h in c_hits], treatment: [h.doc_id for h in t_hits]},
                    offset, k, seed, tuple(zip(before, page.teams)) if page is not None else (),
                )
                for doc, team in merged:
                    titles[doc] = by_team[team][doc].title
                results = tuple(
                    ShownResult(doc, offset + i + 1, by_team[team][doc].score, team)
                    for i, (doc, team) in enumerate(merged)
                )
                fingerprint_arms = (control, treatment)
        else:  # shadow
            arm = control
            results = shown(await self._control(query, depth), control)
            fingerprint_arms = (control,)
            shadow_task = True

        latency_ms = (time.perf_counter() - t0) * 1000.0
        now = self._clock()
        impression = Impression(
            impression_id=impression_id,
            experiment_id=cfg.experiment_id,
            ts=now,
            unit_id=unit_id,
            arm=arm,
            mode=mode,
            query=query,
            k=depth,
            results=results,
            fingerprints=self._fingerprints(*fingerprint_arms),
            latency_ms=latency_ms,
            fallback=fallback,
            error=error,
            context=ctx,
        )
        exposed = routed is None or bool(routed.rows)  # a layered unit in no experiment and no holdout: no row
        if shadow_task:
            self._start_shadow(impression)
        elif routed is not None and self.layered is not None:
            for i, row in enumerate(self.layered.impressions(impression, routed)):
                self._log(row, counted_as=arm if i == 0 else None)  # one per search, by the backend arm
        else:
            self._log(impression)
        status = ("fallback" if fallback else "ok") if exposed else "unenrolled"
        self.metrics.search_requests.labels(arm, mode, status).inc()
        # Earlier pages' positions are padded with "" (never a valid doc id), so positions stay absolute.
        claims = ImpressionClaims(
            impression_id=impression_id,
            experiment_id=cfg.experiment_id,
            unit_id=unit_id,
            arm=arm,
            mode=mode,
            issued_at=now,
            expires_at=now + cfg.token_ttl_s,
            doc_ids=("",) * offset + tuple(r.doc_id for r in results),
            teams=(None,) * offset + tuple(r.team for r in results),
            enrollments=LayeredRouter.enrollments(routed) if routed is not None else (),
        )
        served = "interleaved" if arm == "interleaved" and not fallback else (control if fallback else arm)
        page_state = PageState(
            experiment_id=cfg.experiment_id, unit_id=unit_id, query_digest=query_digest(query), mode=mode,
            arm=arm, served=served, seed=seed, offset=offset + len(results), k=k,
            shown=tuple(before) + tuple(r.doc_id for r in results),
            teams=(tuple(page.teams) if page is not None else ()) + tuple(r.team for r in results),
            expires_at=now + cfg.token_ttl_s,
        )
        return SearchOutcome(impression_id, sign(claims, self._secret) if exposed else None, arm, mode, fallback,
                             results, titles,
                             offset=offset, has_more=len(results) == k,
                             page_token=sign_page(page_state, self._secret), enrollments=claims.enrollments)

    def _log(self, impression: Impression, *, counted_as: str | None = "") -> None:
        """Submit one row; ``abharness_impressions_total`` counts it under ``counted_as`` (default: its arm;
        None: not counted, for the further rows of a layered search)."""
        if self.writer is None:
            return
        if self.writer.submit(impression):
            if counted_as is not None:
                self.metrics.impressions.labels(counted_as or impression.arm).inc()
        elif self.config.events.on_full == "reject":
            self.metrics.search_requests.labels(impression.arm, impression.mode, "rejected").inc()
            raise QueueFull("the event queue is full (events.on_full=reject); retry later")

    # ----------------------------------------------------------------------------------------------- shadow
    def _start_shadow(self, impression: Impression) -> None:
        """Compute the treatment ranking off the request path, then log the impression with it.

        The impression is accepted by the writer only after the shadow finishes (or fails), so in reject mode a
        full queue cannot fail the user's request; on shutdown ``drain`` waits for pending shadows.
        """
        if len(self._shadow_tasks) >= self.config.limits.max_shadow_inflight:
            self._log_shadow(replace(impression, error="shadow skipped: too many shadow rankings in flight"))
            return
        task = asyncio.get_running_loop().create_task(self._shadow(impression))
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(self, impression: Impression) -> None:
        treatment = self.config.treatments[0]
        try:
            hits = await self._call(treatment, impression.query, impression.k, self.config.timeouts.shadow_s)
        except BackendError as exc:
            self._log_shadow(replace(impression, error=f"shadow: {exc}"))
            return
        offset = int(impression.context.get("page_offset", 0))  # a later page: the same slice, absolute positions
        shadow = tuple(ShownResult(h.doc_id, offset + i + 1, h.score, treatment) for i, h in enumerate(hits[offset:]))
        fps = {**impression.fingerprints, **self._fingerprints(treatment)}
        self._log_shadow(replace(impression, shadow_results=shadow, fingerprints=fps))

    def _log_shadow(self, impression: Impression) -> None:
        if self.writer is not None and self.writer.submit(impression):
            self.metrics.impressions.labels(impression.arm).inc()

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) for in-flight shadow rankings so their impressions are logged before shutdown."""
        pending = list(self._shadow_tasks)
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)

    # ----------------------------------------------------------------------------------------------- clicks
    async def click(self, token: str, doc_id: str, position: int, dwell_ms: float | None = None) -> ClickOutcome:
        """Validate and log one click. Raises ``InvalidToken`` (counted by reason) or ``QueueFull``.

        Duplicates are recognised by an in-process LRU; for an impression issued before this process started
        (a click replayed after a restart) the store is asked too, so ``abharness_clicks_total`` counts it once.
        """
        now = self._clock()
        try:
            claims = verify(token, self._secret, now=now, experiment_id=self.config.experiment_id)
            team = check_click(claims, doc_id, position)
        except InvalidToken as exc:
            self.metrics.clicks_rejected.labels(exc.reason).inc()
            raise
        key = (claims.impression_id, doc_id)
        if not self._seen.add(key):
            return ClickOutcome(claims.impression_id, duplicate=True)
        rows = self._rows(claims)
        if claims.issued_at < self._started_at and await self._stored_click((rows[0][0], doc_id)):
            return ClickOutcome(claims.impression_id, duplicate=True)
        event = Click(
            impression_id=claims.impression_id,
            experiment_id=claims.experiment_id,
            unit_id=claims.unit_id,
            arm=claims.arm,
            ts=now,
            doc_id=doc_id,
            position=position,
            team=team,
            dwell_ms=dwell_ms,
        )
        events = [replace(event, impression_id=i, experiment_id=e, arm=a) for i, e, a in rows]
        if self.writer is not None and not all([self.writer.submit(ev) for ev in events]):
            self._seen.discard(key)  # a retry is deduplicated by the store for the rows that were taken
            if self.config.events.on_full == "reject":
                raise QueueFull("the event queue is full (events.on_full=reject); retry the click later")
        else:
            self.metrics.clicks.labels(claims.arm).inc()
        return ClickOutcome(claims.impression_id, duplicate=False)

    def _rows(self, claims: ImpressionClaims) -> list[tuple[str, str, str]]:
        """(impression_id, experiment_id, arm) of every row an event on this impression is credited to: one per
        enrolled experiment for a layered search (``abharness.serve.layered``), else the impression itself."""
        if not claims.enrollments:
            return [(claims.impression_id, claims.experiment_id, claims.arm)]
        return [(row_impression_id(claims.impression_id, e, claims.experiment_id), e, a)
                for e, a in claims.enrollments]

    async def _stored_click(self, key: tuple[str, str]) -> bool:
        """True when the store already holds this click (only asked for impressions older than this process)."""
        has_click = getattr(self.store, "has_click", None)
        if has_click is None:
            return False
        try:
            return bool(await anyio.to_thread.run_sync(has_click, *key))
        except Exception as exc:  # noqa: BLE001 - store down: accept the click; the store dedupes the row anyway
            log.debug("duplicate check for a replayed click failed (%s); accepting it", exc)
            return False

    def feedback(self, token: str, kind: str, doc_id: str, position: int, value: float | None = None) -> ClickOutcome:
        """Validate and log one browser signal ("seen", "dwell") about a shown result; the token and the position are
        checked as for a click. Raises ``InvalidToken`` or ``QueueFull``. Duplicates are ignored by the store."""
        now = self._clock()
        try:
            claims = verify(token, self._secret, now=now, experiment_id=self.config.experiment_id)
            check_click(claims, doc_id, position)
        except InvalidToken as exc:
            self.metrics.clicks_rejected.labels(exc.reason).inc()
            raise
        rows = [Feedback(impression_id=i, experiment_id=e, unit_id=claims.unit_id, arm=a, ts=now, kind=kind,
                         doc_id=doc_id, position=position, value=value) for i, e, a in self._rows(claims)]
        if self.writer is not None and not all([self.writer.submit(ev) for ev in rows]) \
                and self.config.events.on_full == "reject":
            raise QueueFull("the event queue is full (events.on_full=reject); retry later")
        return ClickOutcome(claims.impression_id, duplicate=False)

    # ----------------------------------------------------------------------------------------------- admin
    async def admin_change(self, action: str, actor: str, payload: dict[str, Any]) -> ExperimentState:
        """Record an audit entry in the store (synchronously, so it is durable), then apply it."""
        entry = AuditEntry(
            ts=self._clock(), experiment_id=self.config.experiment_id, actor=actor, action=action, payload=payload
        )
        trial = ExperimentState(**{**self.state.__dict__, "overrides": dict(self.state.overrides)})
        trial.apply(entry)  # validate before writing (raises ValueError on bad weights)
        await anyio.to_thread.run_sync(self.store.write_batch, [entry])
        self.state.apply(entry)
        self._audit_keys.add(_audit_key(entry))
        self.sync_metrics()
        log.info("admin change %s by %s: %s (now weights=%s paused=%s killed=%s)", action, actor, payload,
                 self.state.weights, self.state.paused, self.state.killed,
                 extra={"event": "admin_change", "action": action, "actor": actor})
        return self.state

    def _log_fallback(self, arm: str, control: str, error: str) -> None:
        """One warning for the first fallback of ``arm``, then at most one per ``FALLBACK_LOG_INTERVAL_S`` with the
        count since, so an outage is visible in the server output without a line per request."""
        now = self._clock()
        last, since = self._fallback_log.get(arm, (float("-inf"), 0))
        if now - last < FALLBACK_LOG_INTERVAL_S:
            self._fallback_log[arm] = (last, since + 1)
            return
        self._fallback_log[arm] = (now, 0)
        more = f" ({since} more since the last line)" if since else ""
        log.warning("fallback: arm %r failed (%s); served by control %r%s", arm, error, control, more,
                    extra={"event": "fallback", "arm": arm})

    def mark_audit_applied(self, entries: list[AuditEntry]) -> None:
        """Remember entries already reflected in ``state`` (the log replayed at start-up)."""
        self._audit_keys.update(_audit_key(e) for e in entries)

    async def sync_from_audit(self) -> int:
        """Apply admin changes that other replicas wrote to the shared audit log since the last look.

        Every replica writes its admin changes to the store before applying them, so the log is the shared truth;
        entries not seen yet are applied in log order (the same ``ExperimentState.apply`` as live changes).
        Entries naming arms this config does not have are skipped. Returns how many entries were applied.
        """
        entries = await anyio.to_thread.run_sync(self.store.audit_log, self.config.experiment_id)
        arms = set(self.state.weights)
        applied = 0
        for entry in entries:
            key = _audit_key(entry)
            if key in self._audit_keys:
                continue
            self._audit_keys.add(key)
            if entry.action == "serve_start":
                continue
            if entry.action == "allocation" and set(entry.payload.get("weights", {})) != arms:
                continue
            if entry.action == "override_set" and entry.payload.get("arm") not in arms:
                continue
            try:
                self.state.apply(entry)
            except (KeyError, ValueError):
                continue  # a malformed entry from another version: never let it stop routing
            applied += 1
        if applied:
            self.sync_metrics()
        return applied

    def sync_metrics(self) -> None:
        for name in self.state.weights:
            share = self.state.alloc.share(name)
            if self.state.routing_to_control:
                share = 1.0 if name == self.config.control else 0.0
            self.metrics.allocation_weight.labels(name).set(share)
        self.metrics.paused.set(1 if self.state.routing_to_control else 0)

    def replace_backend(self, arm: str, backend: SearchBackend) -> None:
        """Swap in the backend of ``arm`` (the reconnect loop, once an arm unavailable at start answers)."""
        self.backends[arm] = backend
        self._update_available()

    def unavailable_arms(self) -> list[str]:
        """Arms whose backend could not be opened (served by control until the reconnect succeeds)."""
        return [name for name, b in self.backends.items() if getattr(b, "info", None) is not None
                and b.info.model_fingerprint == "unavailable"]

    def _update_available(self) -> None:
        down = set(self.unavailable_arms())
        for name in self.backends:
            self.metrics.arm_available.labels(name).set(0 if name in down else 1)
            if name in down:
                self.metrics.backend_up.labels(name).set(0)

    async def readiness(self) -> tuple[dict[str, str], dict[str, str]]:
        """``(problems, degraded)``. Problems make the proxy not ready (503): the store cannot take a write, the
        event log is failing, control does not answer. Degraded arms do not: control serves their units.

        Messages are public (no paths, URLs or upstream replies); the details go to the log, once per change.
        """
        problems: dict[str, str] = {}
        degraded: dict[str, str] = {}
        details: dict[str, str] = {}
        t0 = time.perf_counter()
        try:
            await anyio.to_thread.run_sync(self.store.ping)
        except Exception as exc:  # readiness reports any failure, it does not raise
            problems["store"] = "the event store cannot take a write"
            details["store"] = f"{type(exc).__name__}: {exc}"
        self.metrics.store_probe_seconds.observe(time.perf_counter() - t0)
        writer_problem = getattr(self.writer, "public_problem", None)
        if callable(writer_problem) and (p := writer_problem()):
            problems["event_log"] = p
            details["event_log"] = str(self.writer.problem())  # type: ignore[union-attr]
        down = set(self.unavailable_arms())
        for name, backend in self.backends.items():
            where = problems if name == self.config.control else degraded
            if name in down:
                where[f"arm:{name}"] = "unavailable since start; reconnecting in the background"
                continue
            ping = getattr(backend, "ping", None)
            if ping is None:
                continue
            try:
                await anyio.to_thread.run_sync(ping)
                self.metrics.backend_up.labels(name).set(1)
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                self.metrics.backend_up.labels(name).set(0)
                where[f"arm:{name}"] = "the backend does not answer" + (
                    "" if name == self.config.control else "; its units are served by control"
                )
                details[f"arm:{name}"] = f"{type(exc).__name__}: {exc}"
        if details != self._last_readiness_details:
            for key, text in details.items():
                if self._last_readiness_details.get(key) != text:
                    log.warning("readiness: %s: %s", key, text)
            self._last_readiness_details = details
        return problems, degraded

    async def ready(self) -> dict[str, str]:
        """Problems that make the service not ready (empty dict: ready); see ``readiness``."""
        return (await self.readiness())[0]
