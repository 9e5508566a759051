"""The demo's live runs: the proxy (real uvicorn on loopback) with an experiment config, simulated users, and the
analysis of what they logged. Used by the A/B and the interleaving stages."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from abharness.analysis import AnalysisReport
    from abharness.config import ExperimentConfig
    from abharness.simulate.driver import SimulationResult

__all__ = ["analyze_logged", "experiment_config", "fresh_event_log", "live_run"]


def experiment_config(exp_id: str, mode: str, store_url: str, arms: dict[str, tuple[Path, str]],
                      k: int) -> ExperimentConfig:
    """A 50/50 experiment over the two local arms (index, model) with fresh random secrets."""
    from abharness.config import parse_config

    (ctrl, (ci, cm)), (trt, (ti, tm)) = list(arms.items())
    return parse_config({
        "experiment_id": exp_id, "salt": f"{exp_id}-salt", "unit": "user", "mode": mode, "k": k,
        "arms": [{"name": ctrl, "role": "control", "backend": {"kind": "local", "index": str(ci), "model": cm}},
                 {"name": trt, "role": "treatment", "backend": {"kind": "local", "index": str(ti), "model": tm}}],
        "weights": {ctrl: 0.5, trt: 0.5}, "store_url": store_url,
        "admin_token": secrets.token_urlsafe(24), "token_secret": secrets.token_urlsafe(24),
        "timeouts": {"control_s": 30.0, "treatment_s": 30.0, "shadow_s": 30.0},
    }, source=f"demo {mode} experiment")


def fresh_event_log(out: Path) -> tuple[Path, str]:
    """``<out>/events.db`` emptied (with its WAL files): (path, store URL)."""
    store_path = out / "events.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    return store_path, f"sqlite:///{store_path}"


def live_run(cfg: ExperimentConfig, backends: dict, pool: Any, model: Any, searches: int, *, k: int,
             queries_per_user: int, concurrency: int, seed: int, label: str) -> SimulationResult:
    """Serve ``cfg`` with real uvicorn on loopback (backends injected, so models load once) and simulate users."""
    from prometheus_client import CollectorRegistry

    from abharness.api.app import create_app
    from abharness.simulate import plan_traffic, run_simulation
    from abharness.simulate.live import serve_in_thread

    users = max(2, -(-searches // queries_per_user))
    plans = plan_traffic(pool, users=users, queries_per_user=queries_per_user, sessions_per_user=3,
                         repeat_prob=0.3, seed=seed)
    app = create_app(cfg, registry=CollectorRegistry(), backends=backends)
    with serve_in_thread(app) as url:
        return run_simulation(url, plans, pool, model, k=k, concurrency=concurrency, seed=seed,
                              description=f"{label}: {users} users x {queries_per_user} searches")


def analyze_logged(store_url: str, cfg: ExperimentConfig) -> AnalysisReport:
    """Analyse the experiment of ``cfg`` from the demo's event log (the same use case as `abharness analyze`)."""
    from abharness.analysis import analyze
    from abharness.stores import open_store

    store = open_store(store_url)
    try:
        return analyze(store, cfg.experiment_id, config=cfg)
    finally:
        store.close()
