"""``make bench``: run the issue-13 benchmarks and print one table of their ratios and figures, each with its command
and the machine's load average while it ran (a script that measures; nothing here passes or fails on a time).

    .venv/bin/python loadtest/run_benchmarks.py [--quick] [--only encoder,proxy,analysis,store,demo]

Every benchmark is a script under ``loadtest/`` run as its own process. A script that accepts ``--summary-json FILE``
writes its figures there as ``{"table": [{"figure", "value", "goal"}...]}`` (or the richer dict the encoder and
proxy benchmarks write, turned into rows below); the rows are collected into the final table. A script that does
not (yet) write a summary is still run, and the last lines of its output are shown under the table. A benchmark
whose script is missing is listed as not run.

The analysis and store benchmarks also run on PostgreSQL when a server answers at ``ABH_BENCH_PG_URL`` (default
postgresql://postgres@127.0.0.1:5432, no database name; 3 s connect timeout): the analysis benchmark in database
abh_bench10m (--quick: abh_bench1m), created and filled from the SQLite store on first use, its rows in the same
table. Otherwise a note is printed and the analysis runs on SQLite only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Bench:
    name: str
    script: str
    args: list[str]
    quick_args: list[str] = field(default_factory=list)


BENCHES = [
    Bench("encoder", "loadtest/bench_encoder.py", ["--documents", "256"], ["--documents", "64"]),
    Bench("proxy", "loadtest/bench_proxy.py", ["--seconds", "6", "--rounds", "2", "--concurrency", "1,8"],
          ["--seconds", "5", "--rounds", "2", "--concurrency", "1,8", "--writer-events", "20000", "--pairs", "200"]),
    # --skip-before: no full-rescan phase (minutes); the 10 M store is built once and reused
    Bench("analysis", "loadtest/bench_analysis.py", ["--skip-before", "--db", "artifacts/bench/analysis_10m.db"],
          ["--skip-before", "--impressions", "1000000", "--units", "100000"]),
    Bench("store", "loadtest/bench_store.py", [], ["--events", "20000"]),
    Bench("demo", "loadtest/bench_demo.py", [], ["--quick"]),
]

#: the PostgreSQL server the analysis and store benchmarks also run on (``ABH_BENCH_PG_URL``, no database name)
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
#: the database the analysis benchmark keeps its copy of the 10 M (--quick: 1 M) impressions in
PG_ANALYSIS_DB = {False: "abh_bench10m", True: "abh_bench1m"}


def pg_server() -> str | None:
    """The PostgreSQL server URL (``ABH_BENCH_PG_URL`` or ``PG_SERVER``) when it answers within 3 s, else None."""
    url = os.environ.get("ABH_BENCH_PG_URL", PG_SERVER).rstrip("/")
    try:
        import psycopg

        with psycopg.connect(f"{url}/postgres", connect_timeout=3):
            return url
    except Exception:  # noqa: BLE001 - not installed, refused, timed out, auth: all "not reachable"
        return None


def pg_args(name: str, quick: bool, server: str | None) -> list[str]:
    """The extra arguments that run ``name`` on PostgreSQL too (none when no server answers)."""
    if server is None:
        return []
    if name == "analysis":
        return ["--pg-url", f"{server}/{PG_ANALYSIS_DB[quick]}"]
    if name == "store":
        return ["--pg-url", f"{server}/postgres"]
    return []


def rows_from(name: str, summary: dict[str, Any]) -> list[dict[str, str]]:
    """Table rows from a benchmark's summary JSON."""
    if "table" in summary:
        return [{k: str(v) for k, v in row.items()} for row in summary["table"]]
    if name == "encoder":
        rows = [{"figure": "query encoding p50, torch (sentence-transformers, 1 thread)",
                 "value": f"{summary['torch_p50_ms']:.2f} ms", "goal": "baseline"}]
        for r in summary["frontier"]:
            if "error" in r:
                rows.append({"figure": f"  ONNX {r['variant']}", "value": "error", "goal": ""})
                continue
            rows.append({"figure": f"  ONNX {r['variant']}: p50, speed-up, top-10 overlap",
                         "value": f"{r['p50_ms']:.2f} ms, {r['speedup']:.1f}x, {r['topk_overlap']:.3f}",
                         "goal": "gate: overlap >= 0.99" + (" (pass)" if r["passes"] else " (FAIL)")})
        rows.append({"figure": f"served encoder ({summary['chosen']}): speed-up over torch at p50",
                     "value": f"{summary['speedup']:.2f}x (overlap {summary['topk_overlap']:.3f})", "goal": ">= 5x, >= 0.99"})
        d = summary.get("documents")
        if d:
            rows.append({"figure": f"document encoding, ONNX vs torch ({d['n']} docs, {d['threads']} threads)",
                         "value": f"{d['speedup']:.2f}x ({d['onnx_docs_per_s']:.0f} vs {d['torch_docs_per_s']:.0f} docs/s)",
                         "goal": "demo: <= 10 min cold"})
        return rows
    if name == "proxy":
        paired = summary.get("paired") or {}
        p50 = paired["p50_ms"]["bare"] if paired else summary["bare"]["p50_ms"]
        rows = [{"figure": f"bare encode+search p50 / throughput ({summary['backend'].split('(')[1].split(' + ')[0]})",
                 "value": f"{p50:.2f} ms / {summary['bare']['rps']:.0f} req/s", "goal": "baseline"}]
        for key, value in summary["ratios"].items():
            text = f"{value:.2f}"
            if key.startswith("p50") and paired:  # paired sets at concurrency 1: the bootstrap 95 % interval
                r = paired["vs_bare"]["proxy /search, " + key.split(", ", 1)[1]]
                text += f" [{r['p50_ratio_lo']:.2f}, {r['p50_ratio_hi']:.2f}], {paired['n']} pairs"
            rows.append({"figure": f"proxy {key}", "value": text,
                         "goal": "<= 1.15" if key.startswith("p50") else ">= 1.5"})
        return rows
    return []


def run(bench: Bench, quick: bool, workdir: Path, server: str | None = None) -> dict[str, Any]:
    script = REPO / bench.script
    cmd = [sys.executable, bench.script, *(bench.quick_args if quick else bench.args),
           *pg_args(bench.name, quick, server)]
    result: dict[str, Any] = {"name": bench.name, "command": " ".join(shlex.quote(c) for c in cmd), "rows": [],
                              "tail": []}
    if not script.is_file():
        result["tail"] = [f"{bench.script} does not exist: not run"]
        return result
    helptext = subprocess.run([sys.executable, bench.script, "--help"], cwd=REPO, capture_output=True, text=True).stdout
    summary_file = workdir / f"{bench.name}.json"
    if "--summary-json" in helptext:
        cmd += ["--summary-json", str(summary_file)]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    print(f"\n=== {bench.name}: {result['command']}  (load average {load0:.2f})", flush=True)
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    print(proc.stdout, flush=True)
    result.update(seconds=time.perf_counter() - t0, load=(load0, os.getloadavg()[0]), rc=proc.returncode)
    if summary_file.is_file():
        result["rows"] = rows_from(bench.name, json.loads(summary_file.read_text()))
    if not result["rows"]:
        result["tail"] = [line for line in proc.stdout.splitlines() if line.strip()][-8:]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (minutes, not tens of minutes)")
    p.add_argument("--only", default="", help="comma-separated subset: " + ",".join(b.name for b in BENCHES))
    args = p.parse_args()
    chosen = [b for b in BENCHES if not args.only or b.name in args.only.split(",")]
    server = pg_server() if any(b.name in ("analysis", "store") for b in chosen) else None
    if server is None and any(b.name in ("analysis", "store") for b in chosen):
        print(f"note: no PostgreSQL answers at {os.environ.get('ABH_BENCH_PG_URL', PG_SERVER)} (ABH_BENCH_PG_URL): "
              "the analysis benchmark runs on SQLite only; the store benchmark starts a throw-away cluster if the "
              "PostgreSQL binaries are installed", flush=True)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(b, args.quick, Path(tmp), server) for b in chosen]
    load_end = os.getloadavg()
    width = max([len(r["figure"]) for res in results for r in res["rows"]] + [30])
    print("\n" + "=" * 100)
    print(f"issue 13 benchmarks on {os.cpu_count()} CPUs; load average at start {load_start[0]:.2f} {load_start[1]:.2f} "
          f"{load_start[2]:.2f}, at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    for res in results:
        where = (f"{res.get('seconds', 0):.0f} s, load {res['load'][0]:.1f} -> {res['load'][1]:.1f}, exit {res['rc']}"
                 if "load" in res else "not run")
        print(f"\n[{res['name']}] {res['command']}  ({where})")
        if res["rows"]:
            print(f"  {'figure':<{width}}  {'measured':<28}  goal")
        for row in res["rows"]:
            print(f"  {row['figure']:<{width}}  {row['value']:<28}  {row.get('goal', '')}")
        for line in res["tail"]:
            print(f"  | {line}")


if __name__ == "__main__":
    main()
