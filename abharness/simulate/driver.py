"""Drive a proxy with simulated users over HTTP (a running server) or in-process (ASGI, no sockets).

Each user runs its planned searches in order: ``POST /search``, the click model decides which shown results are
clicked (grades from the pool's qrels), and each click goes to ``POST /click`` with the impression's real signed
token and a dwell time. Users run concurrently on a pool of async workers sharing one ``httpx.AsyncClient``.
Randomness is seeded per user, so the clicks a user makes do not depend on how workers interleave.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from abharness.core.clickmodels import ClickModel, DwellModel
from abharness.errors import BackendError, ConfigError
from abharness.simulate.population import QueryPool, UserPlan

__all__ = ["SimulationResult", "simulate_users", "run_simulation"]

DEVICES = ("desktop", "mobile")


@dataclass
class SimulationResult:
    """What the simulated users did and what the proxy answered."""

    searches: int = 0
    search_errors: Counter = field(default_factory=Counter)
    clicks_sent: int = 0
    clicks_accepted: int = 0
    click_errors: Counter = field(default_factory=Counter)
    impressions_by_arm: Counter = field(default_factory=Counter)
    clicks_by_arm: Counter = field(default_factory=Counter)
    unit_arms: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    wall_seconds: float = 0.0

    @property
    def errors(self) -> int:
        return sum(self.search_errors.values()) + sum(self.click_errors.values())

    @property
    def searches_per_second(self) -> float:
        return self.searches / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "searches": self.searches,
            "search_errors": dict(self.search_errors),
            "clicks_sent": self.clicks_sent,
            "clicks_accepted": self.clicks_accepted,
            "click_errors": dict(self.click_errors),
            "impressions_by_arm": dict(self.impressions_by_arm),
            "clicks_by_arm": dict(self.clicks_by_arm),
            "units": len(self.unit_arms),
            "units_seeing_more_than_one_arm": sum(1 for a in self.unit_arms.values() if len(a) > 1),
            "wall_seconds": round(self.wall_seconds, 3),
            "searches_per_second": round(self.searches_per_second, 2),
        }


async def _one_user(
    client: httpx.AsyncClient,
    plan: UserPlan,
    pool: QueryPool,
    model: ClickModel,
    dwell: DwellModel,
    k: int,
    seed: int,
    result: SimulationResult,
    tick: Callable[[], None],
) -> None:
    rng = np.random.default_rng([seed, plan.user])
    device = DEVICES[plan.user % len(DEVICES)]
    for s in plan.searches:
        qid = pool.query_ids[s.query_index]
        body = {"query": pool.texts[s.query_index], "unit_id": s.unit_id, "k": k, "context": {"device": device}}
        try:
            resp = await client.post("/search", json=body)
        except httpx.HTTPError as exc:
            result.search_errors[type(exc).__name__] += 1
            tick()
            continue
        result.searches += 1
        tick()
        if resp.status_code != 200:
            result.search_errors[str(resp.status_code)] += 1
            continue
        payload = resp.json()
        arm = str(payload.get("arm"))
        result.impressions_by_arm[arm] += 1
        result.unit_arms[s.unit_id].add(arm)
        shown = payload.get("results", [])
        doc_ids = [r["doc_id"] for r in shown]
        grades = pool.grades(qid, doc_ids, k)
        clicks = model.sample(grades[None, :], rng)[0]
        dwells = dwell.sample(grades, rng)
        for i in np.flatnonzero(clicks):
            r = shown[int(i)]
            click = {
                "impression_token": payload["impression_token"],
                "doc_id": r["doc_id"],
                "position": int(r.get("position", i + 1)),
                "dwell_ms": float(round(dwells[i], 1)),
            }
            result.clicks_sent += 1
            try:
                cresp = await client.post("/click", json=click)
            except httpx.HTTPError as exc:
                result.click_errors[type(exc).__name__] += 1
                continue
            if cresp.status_code in (200, 201, 202):
                result.clicks_accepted += 1
                result.clicks_by_arm[r.get("team") or arm] += 1
            else:
                result.click_errors[str(cresp.status_code)] += 1


async def simulate_users(
    client: httpx.AsyncClient,
    plans: Sequence[UserPlan],
    pool: QueryPool,
    model: ClickModel,
    *,
    dwell: DwellModel | None = None,
    k: int = 10,
    concurrency: int = 8,
    seed: int = 0,
    on_search: Callable[[], None] | None = None,
) -> SimulationResult:
    """Run every plan against ``client`` (base URL = the proxy) with ``concurrency`` async workers."""
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    result = SimulationResult()
    queue: asyncio.Queue[UserPlan] = asyncio.Queue()
    for p in plans:
        queue.put_nowait(p)
    tick = on_search or (lambda: None)
    dwell = dwell or DwellModel()

    async def worker() -> None:
        while True:
            try:
                plan = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await _one_user(client, plan, pool, model, dwell, k, seed, result, tick)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall_seconds = time.perf_counter() - t0
    return result


def run_simulation(
    target: str | Any,
    plans: Sequence[UserPlan],
    pool: QueryPool,
    model: ClickModel,
    *,
    dwell: DwellModel | None = None,
    k: int = 10,
    concurrency: int = 8,
    seed: int = 0,
    timeout_s: float = 30.0,
    progress: bool = True,
    description: str = "simulating users",
) -> SimulationResult:
    """Synchronous entry: ``target`` is a base URL (``http://127.0.0.1:8000``) or an ASGI app (run in-process,
    with its lifespan started and stopped around the run)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    total = sum(len(p.searches) for p in plans)

    async def main(tick: Callable[[], None]) -> SimulationResult:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        if isinstance(target, str):
            if not target.startswith(("http://", "https://")):
                raise ConfigError(f"target {target!r} is not an http(s) URL; pass e.g. http://127.0.0.1:8000")
            async with httpx.AsyncClient(base_url=target, timeout=timeout_s, limits=limits) as client:
                return await simulate_users(
                    client, plans, pool, model, dwell=dwell, k=k, concurrency=concurrency, seed=seed, on_search=tick
                )
        transport = httpx.ASGITransport(app=target)
        async with target.router.lifespan_context(target):
            async with httpx.AsyncClient(transport=transport, base_url="http://proxy", timeout=timeout_s) as client:
                return await simulate_users(
                    client, plans, pool, model, dwell=dwell, k=k, concurrency=concurrency, seed=seed, on_search=tick
                )

    if not progress:
        result = asyncio.run(main(lambda: None))
    else:
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            transient=False,
        ) as bar:
            task = bar.add_task(description, total=total)
            result = asyncio.run(main(lambda: bar.advance(task)))
    if result.searches == 0 and result.search_errors:
        raise BackendError(
            f"every search failed ({dict(result.search_errors)}); is the proxy at {target!r} running and ready?"
        )
    return result
