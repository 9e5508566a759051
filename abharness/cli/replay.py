"""``abharness replay``: re-run an experiment's logged queries through both arms and compare offline with online."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from abharness.errors import ConfigError
from abharness.library import load_replay_qrels as load_qrels_arg

__all__ = ["register", "load_qrels_arg", "parse_arm"]



def parse_arm(value: str) -> tuple[str, str, str]:
    """``NAME=INDEX_DIR,MODEL`` -> (name, index dir, model spec)."""
    name, sep, rest = value.partition("=")
    index, comma, model = rest.partition(",")
    if not (sep and comma and name and index and model):
        raise ConfigError(f"--arm {value!r}: expected NAME=INDEX_DIR,MODEL, e.g. "
                          "--arm baseline=artifacts/indexes/scifact-minilm,minilm")
    return name.strip(), index.strip(), model.strip()


def replay_command(
    store: Annotated[str, typer.Option(help="Event store URL, e.g. sqlite:///events.db.")],
    experiment: Annotated[str, typer.Option(help="Experiment id whose logged queries to replay.")],
    config: Annotated[Optional[str], typer.Option(help="Experiment YAML: arms (index + model) and roles.")] = None,
    arm: Annotated[Optional[list[str]], typer.Option(
        help="Instead of --config: NAME=INDEX_DIR,MODEL, twice; the first is the control.")] = None,
    since: Annotated[Optional[str], typer.Option(help="Window start: unix seconds or ISO 8601.")] = None,
    until: Annotated[Optional[str], typer.Option(help="Window end (exclusive): unix seconds or ISO 8601.")] = None,
    sample: Annotated[Optional[int], typer.Option(help="Replay a seeded uniform sample of N impressions.")] = None,
    qrels: Annotated[Optional[str], typer.Option(
        help="Qrels for recall/MRR/nDCG: a BEIR directory or its qrels/<split>.tsv (query texts matched).")] = None,
    allow_new_versions: Annotated[bool, typer.Option(
        "--allow-new-versions", help="Replay against models/indexes other than the logged ones, on purpose.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Write replay.json and replay.html into this directory.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of tables.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for sampling and bootstrap.")] = 0,
) -> None:
    """Re-run logged queries through both arms (the proxy's search path), recompute the online metrics offline from
    logged clicks, judge documents by clicks over expected clicks, score qrels, measure ranking overlap, and set the
    offline deltas beside the online ones. Refuses models/indexes that differ from the logged ones unless
    --allow-new-versions."""
    import json

    from abharness.cli.analyze import parse_time
    from abharness.library import open_store
    from abharness.replay import replay
    from abharness.replay.render import render_terminal, write_replay_outputs

    err = Console(stderr=True)
    if (config is None) == (not arm):
        raise ConfigError("give either --config experiment.yaml or two --arm NAME=INDEX_DIR,MODEL options")
    arms = [parse_arm(a) for a in arm or []]
    if config is None and len(arms) != 2:
        raise ConfigError(f"--arm given {len(arms)} times; give it twice (control first, then treatment)")
    q, ids = load_qrels_arg(qrels) if qrels else (None, None)
    st = open_store(store)  # before any model loads: a wrong --store fails in milliseconds
    backends = {}
    try:
        if config is not None:
            from abharness.backends.factory import build_backends
            from abharness.config import load_config
            from abharness.replay.layered import replay_arms

            cfg = load_config(config, insecure_dev=True)
            chosen = replay_arms(cfg, experiment, lambda: st.audit_log(cfg.experiment_id))  # layered: by experiment
            control, treatment = chosen.control, chosen.treatment
            backends = build_backends(cfg)  # closed below; an arm of a main-layer experiment uses its backend's
            by_arm = {arm: backends[name] for arm, name in chosen.backend_of.items() if name in backends}
        else:
            from abharness.backends.local import open_local_backend

            control, treatment = arms[0][0], arms[1][0]
            for name, index, model in arms:
                backends[name] = open_local_backend(index, model)
            by_arm = backends
        with err.status("replaying…") as status:
            report = replay(st, experiment, by_arm, control=control, treatment=treatment,
                            since=parse_time(since, "--since"), until=parse_time(until, "--until"),
                            sample=sample, qrels=q, query_ids=ids, allow_new_versions=allow_new_versions,
                            seed=seed, progress=lambda m: status.update(m))
    finally:
        st.close()
        for b in backends.values():
            b.close()
    if out is not None:
        paths = write_replay_outputs(report, out)
        err.print(f"wrote {paths['json']} and {paths['html']}")
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        render_terminal(report, Console())


def register(app: typer.Typer) -> None:
    """Add ``replay`` to the ``abharness`` command."""
    app.command("replay")(replay_command)
