"""Headless load test of the proxy with Locust (a script that measures; it never passes or fails on a time).

    .venv/bin/python loadtest/run_load.py [--backend fake|real] [--users 16] [--seconds 20] [--mode ab]
        [--out artifacts/load] [--no-logging]

1. starts a local proxy in a child process: real uvicorn on 127.0.0.1 and a free port, with the SQLite event store
   and background writer (``--no-logging`` turns the event log off). ``--backend real`` serves the MiniLM and
   fine-tuned FAISS indexes from ``artifacts/`` (``--index-base``, ``--index-ft``, ``--model-ft``); ``fake`` (the
   default when those are missing) serves in-memory word-overlap backends over a SciFact slice, so the numbers
   are the proxy's own overhead;
2. runs ``locust -f loadtest/locustfile.py --headless`` against it for a bounded time (loopback only);
3. stops the proxy with SIGTERM (it flushes the event log) and writes ``load.json`` and the Locust CSVs to
   ``--out``: per endpoint request count, failures, p50/p95/p99 latency (ms) and throughput, plus the proxy's
   stored impressions and clicks when logging is on.

The load generator shares the machine with the proxy, which lowers the proxy's numbers; the load average is
printed with the results.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ABHARNESS_SHARED_DATA", REPO.parent / "shared" / "data"))


def _config(args: argparse.Namespace, store_url: str) -> dict:
    if args.backend == "real":
        arms = [("baseline", "control", args.index_base, "minilm"),
                ("finetuned", "treatment", args.index_ft, str(args.model_ft))]
    else:  # placeholders: the serve child injects fake backends
        arms = [("baseline", "control", "unused-a", "minilm"), ("finetuned", "treatment", "unused-b", "minilm")]
    return {
        "experiment_id": "loadtest", "salt": "loadtest-salt", "unit": "user", "mode": args.mode, "k": args.k,
        "arms": [{"name": n, "role": r, "backend": {"kind": "local", "index": str(i), "model": m}}
                 for n, r, i, m in arms],
        "weights": {"baseline": 0.5, "finetuned": 0.5}, "store_url": store_url,
        "events": {"enabled": not args.no_logging},
        "admin_token": secrets.token_urlsafe(24), "token_secret": secrets.token_urlsafe(24),
        "timeouts": {"control_s": 10.0, "treatment_s": 10.0, "shadow_s": 10.0},
    }


def serve_child(config_file: Path, backend: str, port_file: Path) -> None:
    """The proxy process: ``create_app`` (fake backends injected, or the config's real ones) under uvicorn."""
    from abharness.api.app import create_app
    from abharness.cli.serve import run_uvicorn
    from abharness.config import parse_config

    cfg = parse_config(json.loads(config_file.read_text()), source=str(config_file))
    backends = None
    if backend == "fake":
        from abharness.data import load_beir, slice_dataset
        from abharness.testing.fakes import DictBackend

        ds = slice_dataset(load_beir(DATA / "scifact", "test"), 300, 400, seed=0)
        docs = {d: doc.full_text for d, doc in ds.corpus.items()}
        backends = {"baseline": DictBackend(docs, name="baseline"), "finetuned": DictBackend(docs, name="finetuned")}
    run_uvicorn(create_app(cfg, backends=backends), host="127.0.0.1", port=0, port_file=port_file,
                log_level="warning")


def _wait_ready(port_file: Path, proc: subprocess.Popen, timeout_s: float = 180.0) -> str:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the proxy exited with code {proc.returncode} before it was ready")
        if port_file.is_file() and port_file.read_text().strip():
            url = f"http://127.0.0.1:{int(port_file.read_text())}"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    raise SystemExit(f"the proxy was not ready within {timeout_s:.0f} s")


def parse_stats(csv_file: Path) -> dict[str, dict]:
    """Locust's ``*_stats.csv`` -> {name: {requests, failures, p50_ms, p95_ms, p99_ms, rps}}."""
    out = {}
    with csv_file.open(newline="") as fh:
        for row in csv.DictReader(fh):
            out[row["Name"]] = {
                "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                "p50_ms": float(row["50%"]), "p95_ms": float(row["95%"]), "p99_ms": float(row["99%"]),
                "max_ms": float(row["Max Response Time"]), "rps": round(float(row["Requests/s"]), 2),
            }
    return out


def run(args: argparse.Namespace) -> dict:
    """Start the proxy, run Locust headless for ``args.seconds``, stop the proxy; return the figures."""
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    db = out / "load-events.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    cfg_file, port_file = out / "experiment.json", out / "port"
    port_file.unlink(missing_ok=True)
    cfg_file.write_text(json.dumps(_config(args, f"sqlite:///{db}"), indent=2))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proxy = subprocess.Popen([sys.executable, __file__, "--serve-child", str(cfg_file), "--backend", args.backend,
                              "--port-file", str(port_file)], env=env)
    try:
        url = _wait_ready(port_file, proxy)
        locust_env = {**env, "ABH_DATA": str(DATA / "scifact"), "ABH_K": str(args.k), "ABH_SEED": str(args.seed),
                      "ABH_CLICK_MODEL": args.click_model}
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(REPO / "loadtest" / "locustfile.py"), "--headless",
             "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{args.seconds}s", "--host", url,
             "--csv", str(out / "locust"), "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"],
            env=locust_env, check=True, cwd=REPO, timeout=args.seconds + 120,
        )
        wall = time.perf_counter() - started
    finally:
        proxy.send_signal(signal.SIGTERM)
        try:
            proxy.wait(60)
        except subprocess.TimeoutExpired:
            proxy.kill()
    stats = parse_stats(out / "locust_stats.csv")
    result = {
        "backend": args.backend, "mode": args.mode, "logging": not args.no_logging, "users": args.users,
        "seconds": args.seconds, "wall_seconds": round(wall, 1), "endpoints": stats,
        "errors": sum(s["failures"] for s in stats.values() if s is not stats.get("Aggregated")),
        "load_average": os.getloadavg(),
    }
    if not args.no_logging and db.is_file():
        from abharness.stores import open_store

        store = open_store(f"sqlite:///{db}", migrate=False)
        try:
            result["stored"] = store.counts("loadtest")
        finally:
            store.close()
    (out / "load.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["fake", "real"], default=None,
                   help="real = artifacts' MiniLM + fine-tuned indexes (default when present), fake = in-memory")
    p.add_argument("--index-base", type=Path, default=REPO / "artifacts" / "indexes" / "scifact-minilm")
    p.add_argument("--index-ft", type=Path, default=REPO / "artifacts" / "indexes" / "scifact-ft")
    p.add_argument("--model-ft", type=Path, default=REPO / "artifacts" / "models" / "scifact-ft")
    p.add_argument("--mode", choices=["ab", "interleave", "shadow"], default="ab")
    p.add_argument("--users", type=int, default=16)
    p.add_argument("--spawn-rate", type=float, default=8.0)
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--click-model", default="dbn")
    p.add_argument("--no-logging", action="store_true", help="serve without the event log")
    p.add_argument("--out", default=str(REPO / "artifacts" / "load"))
    p.add_argument("--serve-child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_child is not None:
        serve_child(args.serve_child, args.backend or "fake", args.port_file)
        return
    if args.backend is None:
        ready = all((d / "manifest.json").is_file() for d in (args.index_base, args.index_ft))
        args.backend = "real" if ready and args.model_ft.is_dir() else "fake"
    result = run(args)
    print(f"load test: backend={result['backend']} mode={result['mode']} logging={result['logging']} "
          f"users={result['users']} for {result['seconds']} s (load average {result['load_average'][0]:.1f})")
    print(f"{'endpoint':<12}{'requests':>10}{'failures':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>9}")
    for name, s in result["endpoints"].items():
        print(f"{name:<12}{s['requests']:>10}{s['failures']:>10}{s['p50_ms']:>9.0f}{s['p95_ms']:>9.0f}"
              f"{s['p99_ms']:>9.0f}{s['rps']:>9.1f}")
    if "stored" in result:
        print(f"stored by the proxy: {result['stored']}")
    print(f"errors: {result['errors']}; written to {Path(args.out) / 'load.json'}")


if __name__ == "__main__":
    main()
