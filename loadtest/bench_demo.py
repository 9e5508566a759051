"""Benchmark: a cold ``make demo`` (issue 13, item 5): the whole demo with nothing to reuse.

    .venv/bin/python loadtest/bench_demo.py [--quick] [--keep DIR] [--summary-json F]

Runs ``abharness demo`` as its own process with a fresh ``--artifacts`` folder (no fine-tuned model, no index, no
ONNX export to reuse), a fresh ``--out`` and an empty ``ABHARNESS_CACHE`` (no cached corpus embeddings), i.e. what a
fresh clone's ``make demo`` does after the install. The data come from ``$ABHARNESS_DATA`` / ``../shared/data`` as
the demo finds them (nothing is downloaded when they are there). Prints the wall time of the whole process
(interpreter start and imports included) and each stage's time from the demo's ``summary.json``, with the machine's
load average before and after. ``--quick`` runs the demo's tiny slice instead (minutes; no goal applies to it).

The run takes 9-20 minutes on this project's 2-CPU machines (the first stages use both cores): run it on a quiet
machine, the figure follows the load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 600.0


def abharness_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("abharness")
    if exe.is_file():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from abharness.cli.main import main; sys.argv[0] = 'abharness'; main()"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the demo's tiny slice (no goal applies)")
    p.add_argument("--keep", type=Path, default=None,
                   help="run in this (new or empty) folder and keep it, instead of a temporary one")
    p.add_argument("--summary-json", type=Path, default=None, help="also write the figures there (make bench)")
    args = p.parse_args()

    if args.keep is not None:
        if args.keep.exists() and any(args.keep.iterdir()):
            raise SystemExit(f"--keep {args.keep}: the folder is not empty; a cold run needs an empty one")
        args.keep.mkdir(parents=True, exist_ok=True)
        root, cleanup = args.keep, False
    else:
        root, cleanup = Path(tempfile.mkdtemp(prefix="abh-cold-demo-")), True
    try:
        out, artifacts, cache = root / "out", root / "artifacts", root / "cache"
        cache.mkdir()
        cmd = [*abharness_cmd(), "demo", "--out", str(out), "--artifacts", str(artifacts)]
        if args.quick:
            cmd.append("--quick")
        env = {**os.environ, "ABHARNESS_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        load0 = os.getloadavg()
        print(f"cold demo: {' '.join(cmd)}  (ABHARNESS_CACHE empty; load average {load0[0]:.2f} {load0[1]:.2f} "
              f"{load0[2]:.2f})", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env)
        wall = time.perf_counter() - t0
        load1 = os.getloadavg()
        summary_file = out / "summary.json"
        if proc.returncode != 0 or not summary_file.is_file():
            raise SystemExit(f"the demo failed (exit {proc.returncode}); nothing measured")
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
    finally:
        if cleanup:
            shutil.rmtree(root, ignore_errors=True)

    kind = "quick demo (tiny slice)" if args.quick else "make demo"
    rows = [{"figure": f"cold {kind}: wall, fresh artifacts and empty cache (load {load0[0]:.1f} -> {load1[0]:.1f})",
             "value": f"{int(wall // 60)} min {int(wall % 60):02d} s ({wall:.0f} s)",
             "goal": "" if args.quick else (f"<= 10 min ({'met' if wall <= GOAL_S else 'not met'})")}]
    print(f"\ncold {kind}: {wall:.1f} s wall (load average {load0[0]:.2f} -> {load1[0]:.2f}); the demo's own "
          f"wall_seconds {summary.get('wall_seconds')}")
    for stage in summary.get("stages", []):
        name, seconds = stage.get("name", "?"), float(stage.get("seconds", 0.0))
        print(f"  {seconds:8.1f} s  {name}{' (reused)' if stage.get('reused') else ''}")
        rows.append({"figure": f"  stage: {name[:60]}", "value": f"{seconds:.0f} s", "goal": ""})
    if args.summary_json:
        args.summary_json.write_text(json.dumps({"table": rows, "wall_seconds": wall, "load": [load0, load1],
                                                 "stages": summary.get("stages", [])}, indent=2))


if __name__ == "__main__":
    main()
