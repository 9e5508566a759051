"""Fault-suite harness: a real ``abharness serve`` process, index servers for its arms, a load driver that records
every event the proxy accepted, and the accounting that compares them with what was stored, spooled, quarantined
and counted as dropped. Used by tests/faults/test_faults.py."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from abharness.stores import open_store
from abharness.stores.spool import Spool, event_from_json
from abharness.testing.configs import config_dict

CLI = "import sys; from abharness.cli.main import main; main(sys.argv[1:])"
EXPERIMENT = "exp1"


@dataclass
class Load:
    """What the clients saw: searches answered/failed, and every event the proxy accepted, with when."""

    answered: int = 0
    failed: int = 0
    impressions: dict[str, float] = field(default_factory=dict)  # impression id -> time accepted
    clicks: dict[tuple[str, str], float] = field(default_factory=dict)  # (impression id, doc id) -> time
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def accepted(self) -> int:
        return len(self.impressions) + len(self.clicks)


class LoadDriver:
    """``threads`` clients searching (and clicking half of the results lists) until ``stop()``."""

    def __init__(self, base: str, *, threads: int = 4, seed: int = 0) -> None:
        self.base, self.threads, self.seed = base, threads, seed
        self.load = Load()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def _run(self, worker: int) -> None:
        rng = random.Random(self.seed * 100 + worker)
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self._stop.is_set():
                unit = f"u{rng.randrange(2000)}"
                try:
                    r = client.post("/search", json={"query": rng.choice(["cell", "gene virus", "heart"]),
                                                     "unit_id": unit})
                except httpx.HTTPError:
                    with self.load.lock:
                        self.load.failed += 1
                    time.sleep(0.02)
                    continue
                if r.status_code != 200:
                    with self.load.lock:
                        self.load.failed += 1
                    time.sleep(0.02)
                    continue
                body = r.json()
                now = time.monotonic()
                with self.load.lock:
                    self.load.answered += 1
                    if body["impression_token"]:
                        self.load.impressions[body["impression_id"]] = now
                if body["impression_token"] and body["results"] and rng.random() < 0.5:
                    doc = body["results"][0]["doc_id"]
                    try:
                        c = client.post("/click", json={"impression_token": body["impression_token"], "doc_id": doc,
                                                        "position": 1})
                    except httpx.HTTPError:
                        continue
                    if c.status_code == 200 and c.json()["status"] == "accepted":
                        with self.load.lock:
                            self.load.clicks[(body["impression_id"], doc)] = time.monotonic()

    def start(self) -> LoadDriver:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def stop(self) -> Load:
        self._stop.set()
        for t in self._workers:
            t.join(30)
        return self.load


class Proxy:
    """``abharness serve`` in a subprocess; ``base`` once it answers."""

    def __init__(self, tmp: Path, *, arm_urls: dict[str, str], store_url: str, spool_dir: Path,
                 events: dict[str, Any] | None = None, timeouts: dict[str, float] | None = None) -> None:
        self.tmp, self.spool_dir, self.store_url = tmp, spool_dir, store_url
        cfg = config_dict(
            arms=[{"name": "baseline", "role": "control", "backend": {"kind": "remote", "url": arm_urls["baseline"]}},
                  {"name": "finetuned", "role": "treatment",
                   "backend": {"kind": "remote", "url": arm_urls["finetuned"]}}],
            store_url=store_url, admin_sync_interval_s=0,
            events={"batch_size": 100, "flush_interval_s": 0.2, "spool_dir": str(spool_dir), "spool_after_s": 1.0,
                    "max_queue": 50_000, "shutdown_timeout_s": 10, **(events or {})},
            timeouts={"control_s": 2.0, "treatment_s": 0.3, **(timeouts or {})},
        )
        self.config = tmp / "experiment.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.port_file = tmp / "port"
        self.stderr_path = tmp / "proxy.log"
        self.proc: subprocess.Popen[str] | None = None
        self.base = ""

    def start(self, timeout_s: float = 90.0) -> Proxy:
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "serve", "--config", str(self.config), "--port", "0",
             "--port-file", str(self.port_file), "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=self._stderr, text=True, cwd=self.tmp,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout_s
        while not self.port_file.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"proxy exited with {self.proc.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError("proxy did not report its port")
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{int(self.port_file.read_text())}"
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"proxy never answered /readyz: {self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            m = re.match(r"^(abharness_[a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
            if m and m.group(2) is None:
                out[m.group(1)] = float(m.group(3))
        return out

    def ready(self) -> tuple[int, dict[str, Any]]:
        r = httpx.get(f"{self.base}/readyz", timeout=10)
        return r.status_code, r.json()

    def signal(self, sig: int, timeout_s: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout_s)
        self._stderr.close()
        return rc

    def kill_if_running(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@dataclass
class Outcome:
    fault: str
    answered: int
    failed: int
    accepted: int
    stored: int
    spooled: int
    quarantined: int
    dropped: int
    lost: int
    note: str = ""


def _ids(events: list[Any]) -> tuple[set[str], set[tuple[str, str]]]:
    imps = {e.impression_id for e in events if type(e).__name__ == "Impression"}
    clicks = {(e.impression_id, e.doc_id) for e in events if type(e).__name__ == "Click"}
    return imps, clicks


def spool_contents(spool_dir: Path, *, quarantine: bool = False) -> tuple[set[str], set[tuple[str, str]]]:
    events = []
    for path in Spool(spool_dir).files(quarantine=quarantine):
        for line in path.read_text().splitlines():
            if line.strip():
                events.append(event_from_json(line))
    return _ids(events)


def stored_ids(store_url: str) -> tuple[set[str], set[tuple[str, str]]]:
    store = open_store(store_url)
    mark = "%(e)s" if store_url.startswith("postgres") else ":e"
    try:
        imps = {r[0] for r in store.execute(
            f"SELECT impression_id FROM impressions WHERE experiment_id = {mark}", {"e": EXPERIMENT})}
        clicks = {(r[0], r[1]) for r in store.execute(
            f"SELECT impression_id, doc_id FROM clicks WHERE experiment_id = {mark}", {"e": EXPERIMENT})}
    finally:
        store.close()
    return imps, clicks


def lost_at_close(log: str) -> int:
    m = re.search(r"(\d+) accepted events could not be written before shutdown", log)
    return int(m.group(1)) if m else 0


def account(fault: str, load: Load, *, stored: tuple[set[str], set[tuple[str, str]]],
            spooled: tuple[set[str], set[tuple[str, str]]], quarantined: tuple[set[str], set[tuple[str, str]]],
            dropped: int, note: str = "") -> tuple[Outcome, set[Any]]:
    """Compare what the clients saw accepted with where it ended up; ``lost`` = accepted events found nowhere
    beyond the counted drops (0 means: every accepted event is stored, spooled, quarantined or counted)."""
    found_i = stored[0] | spooled[0] | quarantined[0]
    found_c = stored[1] | spooled[1] | quarantined[1]
    missing = {i for i in load.impressions if i not in found_i} | {c for c in load.clicks if c not in found_c}
    accepted_i, accepted_c = set(load.impressions), set(load.clicks)
    out = Outcome(
        fault=fault, answered=load.answered, failed=load.failed, accepted=load.accepted,
        stored=len(stored[0] & accepted_i) + len(stored[1] & accepted_c),
        spooled=len((spooled[0] - stored[0]) & accepted_i) + len((spooled[1] - stored[1]) & accepted_c),
        quarantined=len(quarantined[0] & accepted_i) + len(quarantined[1] & accepted_c),
        dropped=dropped, lost=max(0, len(missing) - dropped), note=note,
    )
    return out, missing


def header() -> str:
    return (f"{'fault':<34}{'answered':>9}{'failed':>8}{'accepted':>9}{'stored':>8}{'spooled':>8}"
            f"{'quarant.':>9}{'dropped':>8}{'lost':>6}  note")


def row(o: Outcome) -> str:
    return (f"{o.fault:<34}{o.answered:>9}{o.failed:>8}{o.accepted:>9}{o.stored:>8}{o.spooled:>8}"
            f"{o.quarantined:>9}{o.dropped:>8}{o.lost:>6}  {o.note}")


def load_spool(store_url: str, spool_dir: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", CLI, "spool", "load", "--store", store_url, "--spool-dir",
                           str(spool_dir)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


__all__ = ["Load", "LoadDriver", "Proxy", "Outcome", "account", "spool_contents", "stored_ids", "lost_at_close",
           "header", "row", "load_spool", "json", "signal"]
