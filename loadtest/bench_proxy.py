"""Benchmark of the proxy's /search against the same encode+search called in-process (a script, not a test).

    .venv/bin/python loadtest/bench_proxy.py [--index artifacts/indexes/scifact-minilm] [--seconds 8]
        [--concurrency 1,4,16] [--cache-size 0] [--encoder onnx|torch|DIR] [--summary-json F]

First, paired at concurrency 1 (``--pairs N`` sets, ``loadtest/proxy_pairs.py``): each set takes one query through
the bare loop, ``backend.search`` and each proxy below, back to back in a random order, so a moving background
load hits all paths alike; the p50 ratio proxy / bare is reported with a bootstrap 95 % interval over the sets
(``--compare-tree DIR`` adds a proxy served from another checkout, e.g. main, to compare before and after in the
same run). Then, for a bounded time, side by side and alternating within each round:

0. bare: ``encoder.encode([q])`` + ``index.search_vectors`` in one sequential loop (no backend, no batching, no
   HTTP): the floor the proxy is compared with (only at concurrency 1: it is a sequential loop);
1. in-process: ``backend.search([q], k)`` from C threads (the proxy's own code path minus HTTP, micro-batched);
2. proxy, logging on: a real uvicorn process (``create_app`` with the real SQLite store + EventWriter) on
   loopback, driven by C concurrent httpx clients;
3. proxy, logging off: the same with ``events.enabled: false``.

and prints p50/p99 latency and throughput, then the two ratios of issue 13: proxy p50 at concurrency 1 over the
bare p50, and the proxy's best throughput over the bare loop's, then the events/s the EventWriter sustains into
SQLite on its own. Queries are SciFact queries (distinct texts, cycled). With ``--cache-size 0`` (default) every
request encodes its query. ``--encoder onnx`` (default when ``artifacts/onnx/minilm`` exists, written by
``loadtest/bench_encoder.py``) serves the ONNX Runtime export of MiniLM as query encoder over the MiniLM index;
``torch`` the sentence-transformers model. The backend is the real encoder + FAISS index when ``--index`` exists,
else an in-memory DictBackend (and the output says so). The load generator runs on the same machine as the server
(they share the CPU), which lowers the proxy numbers; the default client is a minimal HTTP/1.1 keep-alive client
(``--client raw``) so its own cost stays small (``--client httpx`` for the previous one); the output prints the load.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from proxy_pairs import run_pairs  # loadtest/proxy_pairs.py (this script's directory is on sys.path)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ABHARNESS_SHARED_DATA", REPO.parent / "shared" / "data"))


def scifact_queries(limit: int = 2000) -> list[str]:
    """Distinct SciFact query texts (train + test)."""
    path = DATA / "scifact" / "queries.jsonl"
    if not path.exists():
        return [f"query number {i} about cells and genes" for i in range(limit)]
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            out.append(json.loads(line)["text"])
    return list(dict.fromkeys(out))[:limit]


def build_scifact_index(out: Path) -> Path:
    """Build a flat MiniLM index of the full SciFact corpus into ``out`` (embeddings cached per model + corpus)."""
    from abharness.data import load_beir
    from abharness.encoders.st import load_encoder
    from abharness.index.faiss_index import build_index

    ds = load_beir(DATA / "scifact", split="test")
    build_index(load_encoder("minilm"), ds, out, progress=True)
    return out


ONNX_DIR = REPO / "artifacts" / "onnx" / "minilm"


def encoder_spec(choice: str) -> str:
    """'onnx' -> the exported MiniLM directory, 'torch' -> 'minilm', anything else is passed on (a directory)."""
    if choice == "onnx":
        if not (ONNX_DIR / "onnx_manifest.json").is_file():
            raise SystemExit(f"{ONNX_DIR} does not exist: run loadtest/bench_encoder.py first, or pass --encoder torch")
        return str(ONNX_DIR)
    return "minilm" if choice == "torch" else choice


def open_backend(index: Path | None, cache_size: int, encoder: str = "minilm") -> tuple[Any, str]:
    """The real local backend when the index exists, else a DictBackend over a SciFact corpus slice."""
    if index is not None and index.is_dir():
        from abharness.backends.local import open_local_backend

        backend = open_local_backend(index, encoder, cache_size=cache_size)
        kind = f"ONNX {getattr(backend.encoder, 'variant', '')}" if hasattr(backend.encoder, "variant") else "torch"
        return backend, (f"LocalBackend(MiniLM query encoder: {kind} + FAISS {index.name}, {backend.info.num_docs} docs, "
                         f"cache_size={cache_size})")
    from abharness.testing.fakes import DictBackend

    corpus: dict[str, str] = {}
    corpus_path = DATA / "scifact" / "corpus.jsonl.gz"
    if corpus_path.exists():
        with gzip.open(corpus_path, "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i >= 2000:
                    break
                d = json.loads(line)
                corpus[str(d["_id"])] = d.get("title", "") + " " + d.get("text", "")[:300]
    else:
        from abharness.testing.fakes import tiny_corpus

        corpus = tiny_corpus(2000)
    return DictBackend(corpus, name="bench"), f"DictBackend (word overlap, {len(corpus)} docs; no model: index missing)"


Raw = tuple[list[float], float, int, float]  # latencies (s), elapsed (s), errors, serving-process CPU (s)


def proc_cpu_s(pid: int) -> float:
    """user + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pool(raws: list[Raw]) -> dict[str, float]:
    """Latencies pooled over rounds; throughput = all requests / all measured time."""
    lat = [x for r in raws for x in r[0]]
    out = summarize(lat, sum(r[1] for r in raws))
    out["errors"] = sum(r[2] for r in raws)
    out["cpu_ms"] = 1000.0 * sum(r[3] for r in raws) / max(1, len(lat))
    return out


def summarize(lat: list[float], seconds: float) -> dict[str, float]:
    a = np.asarray(lat) * 1000.0
    return {"n": len(lat), "p50_ms": float(np.percentile(a, 50)) if len(a) else float("nan"),
            "p99_ms": float(np.percentile(a, 99)) if len(a) else float("nan"), "rps": len(lat) / seconds}


def bench_bare(backend: Any, queries: list[str], k: int, seconds: float) -> Raw:
    """The sequential floor: encode one query, search the index, next (no backend, batching, cache or HTTP)."""
    if not hasattr(backend, "encoder"):
        return bench_inprocess(backend, queries, k, 1, seconds)
    encoder, index = backend.encoder, backend.index
    lat: list[float] = []
    stop = time.perf_counter() + seconds
    i = 0
    t_start = time.perf_counter()
    cpu0 = time.process_time()
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        index.search_vectors(encoder.encode([queries[i % len(queries)]], batch_size=1), k)
        lat.append(time.perf_counter() - t0)
        i += 1
    return lat, time.perf_counter() - t_start, 0, time.process_time() - cpu0


def bench_inprocess(backend: Any, queries: list[str], k: int, concurrency: int, seconds: float) -> Raw:
    lat: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    counter = [0]

    def worker() -> None:
        local: list[float] = []
        while time.perf_counter() < stop:
            with lock:
                i = counter[0]
                counter[0] += 1
            t0 = time.perf_counter()
            backend.search([queries[i % len(queries)]], k)
            local.append(time.perf_counter() - t0)
        with lock:
            lat.extend(local)

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, time.perf_counter() - t0, 0, time.process_time() - cpu0


async def _drive(base: str, queries: list[str], concurrency: int, seconds: float) -> Raw:
    import httpx

    lat: list[float] = []
    errors = 0
    counter = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        async def worker(w: int) -> None:
            nonlocal counter, errors
            while time.perf_counter() < stop:
                i = counter
                counter += 1
                t0 = time.perf_counter()
                r = await client.post("/search", json={"query": queries[i % len(queries)], "unit_id": f"u{i % 5000}"})
                if r.status_code == 200:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return lat, elapsed, errors, 0.0


async def _drive_raw(base: str, queries: list[str], concurrency: int, seconds: float) -> Raw:
    """The same load with a minimal HTTP/1.1 keep-alive client over asyncio streams: the load generator shares the
    CPUs with the server, and httpx's own per-request cost (~1 ms of Python) would be charged to the proxy."""
    host, port = base.removeprefix("http://").split(":")
    lat: list[float] = []
    errors = 0
    counter = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal counter, errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < stop:
                i = counter
                counter += 1
                body = json.dumps({"query": queries[i % len(queries)], "unit_id": f"u{i % 5000}"}).encode()
                head = (f"POST /search HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode()
                t0 = time.perf_counter()
                writer.write(head + body)
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                if status == 200:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, time.perf_counter() - t0, errors, 0.0


def start_proxy(args: argparse.Namespace, logging_on: bool, db: Path,
                tree: Path | None = None) -> tuple[subprocess.Popen, str]:
    """A proxy child process; ``tree``: serve it from another checkout (its code and its bench_proxy.py)."""
    port_file = db.with_suffix(".port")
    port_file.unlink(missing_ok=True)
    script = str(tree / "loadtest" / "bench_proxy.py") if tree else __file__
    env = None
    if tree:
        env = {**os.environ, "PYTHONPATH": str(tree)}
    elif args.child_path:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(args.child_path), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, script, "--serve-child", "--db", str(db), "--port-file", str(port_file),
           "--cache-size", str(args.cache_size), "--k", str(args.k), "--torch-threads", str(args.torch_threads),
           "--http", args.http, "--encoder", args.encoder]
    cmd += ["--index", str(args.index)] if args.index else ["--fake"]
    if not logging_on:
        cmd.append("--no-logging")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 180
    import httpx

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"proxy child exited: {proc.stderr.read() if proc.stderr else ''}")
        if port_file.exists():
            base = f"http://127.0.0.1:{port_file.read_text()}"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    return proc, base
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("proxy child did not become ready in 180 s")


def serve_child(args: argparse.Namespace) -> None:
    """Child process: the proxy app (both arms on the same backend) under uvicorn on a free loopback port."""
    if args.fake:
        args.index = None
    from abharness.api.app import create_app
    from abharness.cli.serve import run_uvicorn
    from abharness.testing.configs import make_config

    set_threads(args.torch_threads)
    backend, _ = open_backend(args.index, args.cache_size, encoder_spec(args.encoder))
    cfg = make_config(
        experiment_id="bench", k=args.k, store_url=f"sqlite:///{args.db}",
        admin_token=secrets.token_urlsafe(24), token_secret=secrets.token_urlsafe(24),
        events={"enabled": not args.no_logging},
        timeouts={"control_s": 30, "treatment_s": 30},
    )
    app = create_app(cfg, backends={"baseline": backend, "finetuned": backend})
    run_uvicorn(app, host="127.0.0.1", port=0, port_file=args.port_file, log_level="warning", http=args.http)
    backend.close()


def set_threads(n: int) -> None:
    """Pin torch's intra-op threads (OpenMP spin-waits badly when a shared machine is oversubscribed)."""
    if n > 0:
        import torch

        torch.set_num_threads(n)


def metric_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def bench_writer(n: int = 50_000) -> dict[str, float]:
    """Events/s the EventWriter sustains into a SQLite file on its own (impressions with 10 results)."""
    from abharness.core.events import Impression, ShownResult
    from abharness.stores import open_store
    from abharness.stores.writer import EventWriter

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/w.db")
        results = tuple(ShownResult(f"d{i}", i + 1, 1.0 / (i + 1), "baseline") for i in range(10))
        events = [
            Impression(impression_id=f"i{j}", experiment_id="w", ts=1e9 + j, unit_id=f"u{j % 1000}", arm="baseline",
                       mode="ab", query=f"query {j}", k=10, results=results,
                       fingerprints={"baseline": {"model": "m", "index": "x"}}, latency_ms=5.0)
            for j in range(n)
        ]
        writer = EventWriter(store, max_queue=n + 1, batch_size=500, flush_interval_s=0.2).start()
        t0 = time.perf_counter()
        for ev in events:
            writer.submit(ev)
        submit_s = time.perf_counter() - t0
        lost = writer.close(timeout_s=300)
        total_s = time.perf_counter() - t0
        written = store.counts("w")["impressions"]
        store.close()
    return {"n": n, "written": written, "lost": lost, "submit_us": submit_s / n * 1e6, "events_per_s": written / total_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--index", type=Path, default=REPO / "artifacts" / "indexes" / "scifact-minilm")
    p.add_argument("--seconds", type=float, default=8.0, help="duration of each measurement")
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--cache-size", type=int, default=0, help="query-embedding LRU size (0: encode every request)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--writer-events", type=int, default=50_000)
    p.add_argument("--http", default="auto", help="uvicorn HTTP parser: auto | h11 | httptools")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (latencies pooled)")
    p.add_argument("--torch-threads", type=int, default=1, help="torch threads per process (0: torch default)")
    p.add_argument("--fake", action="store_true", help="use the in-memory DictBackend instead of MiniLM + FAISS")
    p.add_argument("--encoder", default="onnx" if ONNX_DIR.is_dir() else "torch",
                   help="query encoder: onnx (artifacts/onnx/minilm), torch, or an ONNX export directory")
    p.add_argument("--summary-json", type=Path, help="also write the ratios as JSON here")
    p.add_argument("--client", default="raw", choices=["raw", "httpx"],
                   help="load generator: raw HTTP/1.1 keep-alive over asyncio streams (default) or httpx")
    p.add_argument("--pairs", type=int, default=400,
                   help="paired sets at concurrency 1 for the p50 ratio (0: the timed cells' p50s instead)")
    p.add_argument("--seed", type=int, default=0, help="order of the paths within each paired set")
    p.add_argument("--compare-tree", type=Path,
                   help="also serve a logging-on proxy from this checkout (e.g. a worktree of main) in the pairs")
    p.add_argument("--child-path", type=Path,
                   help="prepend this directory to PYTHONPATH of this tree's proxy children only (e.g. a pip --target "
                        "dir with httptools, to measure it against --compare-tree without it)")
    p.add_argument("--serve-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--no-logging", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.serve_child:
        serve_child(args)
        return
    levels = [int(c) for c in args.concurrency.split(",")]
    queries = scifact_queries()
    tmp_index = None
    if args.fake:
        args.index = None
    elif not args.index.is_dir():
        tmp_index = tempfile.TemporaryDirectory()
        print(f"{args.index} does not exist: building a temporary MiniLM index of SciFact for this run")
        args.index = build_scifact_index(Path(tmp_index.name) / "scifact-minilm")
    set_threads(args.torch_threads)
    backend, desc = open_backend(args.index, args.cache_size, encoder_spec(args.encoder))
    import uvicorn

    print(f"backend: {desc}; torch threads per process: {args.torch_threads or 'default'}; "
          f"uvicorn {uvicorn.__version__} http={args.http}; client {args.client}")
    print(f"machine: {os.cpu_count()} CPUs, load average before start {os.getloadavg()} (shared machine; the load "
          "generator runs on the same CPUs as the server)")
    print(f"{len(queries)} distinct SciFact queries, k={args.k}, {args.rounds} rounds x {args.seconds:g} s per cell; "
          "the three paths alternate within each round so they see the same background load\n")
    import httpx

    bare = "bare encode+search, sequential"
    paths = ["in-process backend.search", "proxy /search, logging on", "proxy /search, logging off"]
    raws: dict[tuple[str, int], list[Raw]] = {(p_, c): [] for p_ in paths for c in levels}
    raws[(bare, 1)] = []
    backend.search([queries[0]], args.k)  # warm up
    paired: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        try:
            for logging_on in (True, False):
                procs[logging_on] = start_proxy(args, logging_on, Path(tmp) / f"events-{int(logging_on)}.db")
                asyncio.run(_drive(procs[logging_on][1], queries, 1, 1.0))  # warm up
            if args.compare_tree:
                procs["compare"] = start_proxy(args, True, Path(tmp) / "events-compare.db", args.compare_tree)
            if args.pairs > 0:
                bases = {paths[1]: procs[True][1], paths[2]: procs[False][1]}
                if args.compare_tree:
                    bases[f"proxy /search, on, {args.compare_tree.name}"] = procs["compare"][1]
                paired = run_pairs(backend, queries, bases, k=args.k, n=args.pairs, seed=args.seed)
            if args.compare_tree:
                compare = procs.pop("compare")[0]
                compare.terminate()
                compare.wait(60)
            for r in range(args.rounds):
                raws[(bare, 1)].append(bench_bare(backend, queries, args.k, args.seconds))
                for c in levels:
                    raws[(paths[0], c)].append(bench_inprocess(backend, queries, args.k, c, args.seconds))
                    for path, on in ((paths[1], True), (paths[2], False)):
                        proc, base = procs[on]
                        cpu0 = proc_cpu_s(proc.pid)
                        drive = _drive_raw if args.client == "raw" else _drive
                        lat, elapsed, errors, _ = asyncio.run(drive(base, queries, c, args.seconds))
                        raws[(path, c)].append((lat, elapsed, errors, proc_cpu_s(proc.pid) - cpu0))
                print(f"round {r + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.1f}")
            text = httpx.get(f"{procs[True][1]}/metrics", timeout=10).text
            print(f"proxy (logging on) writer: written={metric_value(text, 'abharness_events_written_total'):.0f} "
                  f"dropped={metric_value(text, 'abharness_events_dropped_total'):.0f} "
                  f"queue_depth={metric_value(text, 'abharness_event_queue_depth'):.0f}")
        finally:
            for proc, _ in procs.values():
                proc.terminate()
                proc.wait(60)
    backend.close()
    rows = [(bare, 1, pool(raws[(bare, 1)]))] + [(p_, c, pool(raws[(p_, c)])) for p_ in paths for c in levels]
    print(f"\n{'path':<34} {'conc':>4} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'CPU ms/req':>10}")
    for name, c, s_ in rows:
        note = f"{s_['errors']:.0f} errors" if s_["errors"] else ""
        print(f"{name:<34} {c:>4} {s_['n']:>9} {s_['p50_ms']:>8.2f} {s_['p99_ms']:>8.2f} {s_['rps']:>8.1f} {s_['cpu_ms']:>10.2f} {note}")
    best: dict[str, float] = {}
    for name, _, s_ in rows:
        best[name] = max(best.get(name, 0.0), s_["rps"])
    print("\ntop throughput: " + "; ".join(f"{k} {v:.1f} req/s" for k, v in best.items()))
    floor = rows[0][2]
    cell = {(name, c): s_ for name, c, s_ in rows}
    ratios = {}
    for label, path in (("logging on", paths[1]), ("logging off", paths[2])):
        if paired:
            ratios[f"p50 ratio, {label}"] = paired["vs_bare"][path]["p50_ratio"]
        elif (path, 1) in cell:
            ratios[f"p50 ratio, {label}"] = cell[(path, 1)]["p50_ms"] / floor["p50_ms"]
        ratios[f"throughput ratio, {label}"] = best[path] / floor["rps"]
    print(f"\nissue 13 item 2 ({desc.split('(')[1].split(' + ')[0]}): bare sequential p50 {floor['p50_ms']:.2f} ms, "
          f"{floor['rps']:.1f} req/s")
    for name, value in ratios.items():
        goal = "<= 1.15" if name.startswith("p50") else ">= 1.5"
        ci = ""
        if paired and name.startswith("p50"):
            r = paired["vs_bare"][paths[1] if name.endswith(" on") else paths[2]]
            ci = f" [95% CI {r['p50_ratio_lo']:.2f}-{r['p50_ratio_hi']:.2f}, {paired['n']} paired sets]"
        print(f"  proxy {name}: {value:.2f}{ci} (goal {goal})")
    w = bench_writer(args.writer_events)
    print(f"\nEventWriter -> SQLite (WAL), batch 500: {w['written']:.0f}/{w['n']} impressions written, "
          f"{w['events_per_s']:.0f} events/s sustained, submit {w['submit_us']:.1f} us/event, lost {w['lost']}")
    print(f"load average after: {os.getloadavg()}")
    if args.summary_json:
        args.summary_json.write_text(json.dumps({
            "backend": desc, "bare": floor, "ratios": ratios, "best_rps": best, "writer_events_per_s": w["events_per_s"],
            "cells": [{"path": n, "concurrency": c, **s_} for n, c, s_ in rows], "load_after": os.getloadavg()[0],
            "paired": paired,
        }, indent=2))
    if tmp_index is not None:
        tmp_index.cleanup()


if __name__ == "__main__":
    main()
