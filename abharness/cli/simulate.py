"""``abharness simulate``: simulated users (click models over qrels) driving a running proxy over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from abharness.errors import ConfigError

__all__ = ["register", "load_pool"]



def load_pool(data: str | Path, *, dataset: str = "scifact", split: str = "test", zipf_s: float = 1.0,
              seed: int = 0):
    """A ``QueryPool`` from a BEIR directory (or a data root holding ``<dataset>/``): queries + qrels only."""
    from abharness.data import load_qrels, load_queries
    from abharness.simulate import QueryPool

    root = Path(data)
    if not (root / "queries.jsonl").is_file() and (root / dataset).is_dir():
        root = root / dataset
    if not root.is_dir():
        raise ConfigError(f"--data {str(data)!r} is not a directory; pass a BEIR directory such as "
                          "../shared/data/scifact (or the data root holding it)")
    queries = load_queries(root)
    qrels, _ = load_qrels(root, split)
    return QueryPool.from_mappings(queries, qrels, zipf_s=zipf_s, seed=seed)


def simulate_command(
    target: Annotated[str, typer.Option(help="Base URL of a running proxy, e.g. http://127.0.0.1:8000.")],
    data: Annotated[Path, typer.Option(help="BEIR directory with queries and qrels (or the data root holding it).")],
    users: Annotated[int, typer.Option(help="Number of simulated users.")] = 200,
    queries_per_user: Annotated[int, typer.Option(help="Searches per user, spread over sessions.")] = 10,
    sessions_per_user: Annotated[int, typer.Option(help="Sessions per user (users come back).")] = 3,
    repeat_prob: Annotated[float, typer.Option(help="Chance a search re-issues one of the user's earlier queries.")] = 0.3,
    unit: Annotated[str, typer.Option(help="Unit id sent to the proxy: 'user' or 'session'.")] = "user",
    split: Annotated[str, typer.Option(help="Qrels split the queries come from.")] = "test",
    dataset: Annotated[str, typer.Option(help="Dataset folder when --data is a data root.")] = "scifact",
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

    pool = load_pool(data, dataset=dataset, split=split, zipf_s=zipf_s, seed=seed)
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
