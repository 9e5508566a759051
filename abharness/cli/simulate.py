"""``abharness simulate``: simulated users (click models over qrels) driving a running proxy over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from abharness.errors import ConfigError

__all__ = ["register", "load_pool"]



def load_pool(data: str | Path, *, split: str = "test", zipf_s: float = 1.0, seed: int = 0):
    """A ``QueryPool`` from one BEIR data set folder (queries.jsonl + qrels/): queries and qrels only."""
    from abharness.data import load_qrels, load_queries
    from abharness.simulate import QueryPool

    root = Path(data)
    if not root.is_dir():
        raise ConfigError(f"--data {str(data)!r} is not a directory; pass one data set's folder, e.g. "
                          "--data ../shared/data/scifact")
    if not (root / "queries.jsonl").is_file():
        inside = sorted(p.name for p in root.iterdir() if (p / "queries.jsonl").is_file())
        hint = f" (it holds data sets: --data {root / inside[0]})" if inside else ""
        raise ConfigError(f"--data {str(data)!r} has no queries.jsonl; --data is one data set's folder{hint}")
    queries = load_queries(root)
    qrels, _ = load_qrels(root, split)
    return QueryPool.from_mappings(queries, qrels, zipf_s=zipf_s, seed=seed)


def simulate_command(
    target: Annotated[str, typer.Option(help="Base URL of a running proxy, e.g. http://127.0.0.1:8000.")],
    data: Annotated[Path, typer.Option(help="One BEIR data set folder with queries.jsonl and qrels/, e.g. "
                                            "../shared/data/scifact.")],
    users: Annotated[int, typer.Option(help="Number of simulated users.")] = 200,
    queries_per_user: Annotated[int, typer.Option(help="Searches per user, spread over sessions.")] = 10,
    sessions_per_user: Annotated[int, typer.Option(help="Sessions per user (users come back).")] = 3,
    repeat_prob: Annotated[float, typer.Option(help="Chance a search re-issues one of the user's earlier queries.")] = 0.3,
    unit: Annotated[str, typer.Option(help="Unit id sent to the proxy: 'user' or 'session'.")] = "user",
    split: Annotated[str, typer.Option(help="Qrels split the queries come from.")] = "test",
    zipf_s: Annotated[float, typer.Option(help="Zipf exponent of query popularity.")] = 1.0,
    click_model: Annotated[str, typer.Option(help="pbm, cascade or dbn.")] = "dbn",
    preset: Annotated[str, typer.Option(help="Click/stop probabilities: perfect, navigational, informational.")] = "navigational",
    eta: Annotated[float, typer.Option(help="PBM examination decay: theta_r = (1/r)^eta.")] = 1.0,
    gamma: Annotated[float, typer.Option(help="DBN continuation probability.")] = 0.9,
    k: Annotated[int, typer.Option(help="Results requested per search.")] = 10,
    concurrency: Annotated[int, typer.Option(help="Concurrent HTTP clients.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the whole simulation.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Simulated users with click models (attractiveness from graded qrels), Zipf query popularity and returning
    users drive the proxy: POST /search, then POST /click with the real impression tokens and dwell times."""
    from abharness.core.clickmodels import make_click_model
    from abharness.simulate import plan_traffic, run_simulation

    pool = load_pool(data, split=split, zipf_s=zipf_s, seed=seed)
    model = make_click_model(click_model, preset=preset, max_grade=pool.max_grade, eta=eta, gamma=gamma)
    plans = plan_traffic(pool, users=users, queries_per_user=queries_per_user,
                         sessions_per_user=sessions_per_user, repeat_prob=repeat_prob, unit=unit,  # type: ignore[arg-type]
                         seed=seed)
    result = run_simulation(target.rstrip("/"), plans, pool, model, k=k, concurrency=concurrency, seed=seed,
                            progress=not json_out)
    summary = result.to_dict()
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            Console().print(f"{key:>32}: {value}")
    if result.errors:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``simulate`` to the ``abharness`` command."""
    app.command("simulate")(simulate_command)
