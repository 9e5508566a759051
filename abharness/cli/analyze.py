"""``abharness analyze``: statistics of a running or finished online experiment, with one gating decision.

Exit codes: ship 0, keep-running 10, rollback 20, usage or data error 2.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from abharness.errors import ConfigError

__all__ = ["register", "parse_time", "parse_pairs"]


def parse_time(value: str | None, option: str) -> float | None:
    """Unix seconds, or an ISO 8601 date/time (UTC when no offset is given)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option} {value!r}: not a time; give unix seconds (1767225600) or ISO 8601 "
                          "(2026-01-01T00:00:00Z)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def parse_pairs(value: list[str] | None, option: str) -> dict[str, float]:
    """'a=0.5,b=0.5' (repeatable) -> {'a': 0.5, 'b': 0.5}."""
    out: dict[str, float] = {}
    for chunk in value or []:
        for item in chunk.split(","):
            if not item.strip():
                continue
            name, sep, num = item.partition("=")
            try:
                if not sep:
                    raise ValueError
                out[name.strip()] = float(num)
            except ValueError:
                raise ConfigError(f"{option} {item!r}: expected NAME=NUMBER, e.g. {option} control=0.5") from None
    return out


def analyze_command(
    store: Annotated[str, typer.Option(help="Event store URL, e.g. sqlite:///events.db or postgresql://...")],
    experiment: Annotated[str, typer.Option(help="Experiment id to analyse.")],
    since: Annotated[Optional[str], typer.Option(help="Window start (inclusive): unix seconds or ISO 8601.")] = None,
    until: Annotated[Optional[str], typer.Option(help="Window end (exclusive): unix seconds or ISO 8601.")] = None,
    metric: Annotated[Optional[list[str]], typer.Option(
        help="Outcome metric(s) to report (repeatable or comma-separated): ctr, mrr, success_at_k, abandonment, "
             "clicks_per_query, time_to_first_click. Default: all. Guardrails are always checked.")] = None,
    segment: Annotated[Optional[str], typer.Option(help="Break down by this logged context attribute (e.g. device).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout instead of tables.")] = False,
    config: Annotated[Optional[str], typer.Option(help="Experiment YAML: control arm and allocation weights.")] = None,
    control: Annotated[Optional[str], typer.Option(help="Control arm name (default: from --config, else an arm "
                                                        "named control/baseline/production).")] = None,
    weights: Annotated[Optional[list[str]], typer.Option(help="Allocation for the SRM check, e.g. control=0.5,treatment=0.5.")] = None,
    primary: Annotated[str, typer.Option(help="Primary metric that decides ship/rollback.")] = "ctr",
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    basis: Annotated[str, typer.Option(help="Decision intervals: 'sequential' (always-valid, safe to peek) or "
                                            "'fixed' (only at the planned sample size).")] = "sequential",
    test: Annotated[str, typer.Option(help="Fixed-horizon test: 'welch' (t, Welch df) or 'z'.")] = "welch",
    mde: Annotated[float, typer.Option(help="Target relative MDE for power and days still needed (0.02 = 2 %).")] = 0.02,
    power: Annotated[float, typer.Option(help="Target power.")] = 0.8,
    tuning_units: Annotated[float, typer.Option(help="mSPRT tuning: units at which the confidence sequence is "
                                                     "tightest (set to the planned sample size).")] = 10_000,
    bootstrap: Annotated[int, typer.Option(help="Cluster-bootstrap resamples for the cross-check (0 = off).")] = 200,
    timeseries_points: Annotated[int, typer.Option(help="Looks in the cumulative-lift time series (0 = off).")] = 8,
    cuped: Annotated[bool, typer.Option("--cuped/--no-cuped", help="CUPED with pre-period covariates.")] = True,
    pre_experiment: Annotated[Optional[str], typer.Option(help="Experiment id holding the CUPED pre-period (default: this one).")] = None,
    pre_since: Annotated[Optional[str], typer.Option(help="Pre-period start.")] = None,
    pre_until: Annotated[Optional[str], typer.Option(help="Pre-period end (default: --since, else the first impression).")] = None,
    pre_modes: Annotated[str, typer.Option(help="Impression modes counted in the pre-period (comma-separated).")] = "shadow",
    margin: Annotated[Optional[list[str]], typer.Option(help="Guardrail margins, e.g. latency_ms=0.1 (relative), "
                                                             "error_rate=0.005, fallback_rate=0.01 (absolute).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    max_searches_per_day: Annotated[Optional[int], typer.Option(help="Exclude units with more searches than this "
                                                                "on any UTC day (bots, scrapers).")] = None,
    min_click_ms: Annotated[Optional[float], typer.Option(help="Exclude units at least half of whose clicks came "
                                                          "sooner than this many ms after the results.")] = None,
    exclude_crawlers: Annotated[bool, typer.Option("--exclude-crawlers", help="Exclude units whose recorded user "
                                                   "agent is on the crawlerdetect list.")] = False,
    winsorize: Annotated[Optional[float], typer.Option(help="Cap every per-unit sum at this percentile (e.g. 99) "
                                                       "before the statistics.")] = None,
    aggregation: Annotated[str, typer.Option(help="'rollup' (per-unit sums the writer keeps; fast) or 'scan' "
                                                  "(re-aggregate every raw event; the old path, same numbers).")] = "rollup",
    serve_metrics: Annotated[bool, typer.Option("--serve-metrics", help="Instead of printing once, re-run the "
                                                "analysis every --interval seconds and export lift, always-valid "
                                                "bounds, p-values, SRM and the decision as Prometheus gauges on "
                                                "http://--metrics-host:--metrics-port/metrics until SIGTERM.")] = False,
    metrics_host: Annotated[str, typer.Option(help="With --serve-metrics: address to listen on.")] = "127.0.0.1",
    metrics_port: Annotated[int, typer.Option(help="With --serve-metrics: port to listen on.")] = 9108,
    interval: Annotated[float, typer.Option(help="With --serve-metrics: seconds between analyses.")] = 30.0,
    engine: Annotated[str, typer.Option(help="Where the per-unit aggregation runs: sql (the store's own database, "
                                             "or DuckDB for parquet:///) or spark (Spark SQL over a parquet:/// "
                                             "export; local mode here, a cluster's session in production).")] = "sql",
    html: Annotated[Optional[Path], typer.Option(help="Also write the results page (index.html + plotly.min.js, "
                                                     "opens offline) into this directory.")] = None,
    evaluation: Annotated[Optional[Path], typer.Option(help="With --html: the offline evaluation of the same "
                                                           "candidate (report.json or its directory), shown beside "
                                                           "the online verdict.")] = None,
    replay_report: Annotated[Optional[Path], typer.Option("--replay", help="With --html: the replay of this "
                                                          "experiment (replay.json or its directory), shown beside "
                                                          "the online verdict.")] = None,
) -> None:
    """Per-arm CTR, MRR of clicks, success@k, abandonment, clicks/query and time to first click with
    unit-clustered (delta-method) tests, CUPED, always-valid p-values, SRM, guardrails, power and interleaving,
    then ONE decision. Exit 0 = ship, 10 = keep-running, 20 = rollback, 2 = usage or data error."""
    from abharness.analysis import AnalysisOptions, PrePeriod, analyze
    from abharness.analysis.exclusions import ExclusionRules
    from abharness.analysis.render import render_report
    from abharness.library import open_store

    err = Console(stderr=True)
    cfg = None
    if config is not None:
        from abharness.config import load_config

        cfg = load_config(config, insecure_dev=True)
    w = parse_pairs(weights, "--weights") or None
    options = AnalysisOptions(
        control=control, weights=w, alpha=alpha, primary=primary, test=test, basis=basis,  # type: ignore[arg-type]
        tuning_units=tuning_units, target_relative_mde=mde, power=power, bootstrap_samples=bootstrap, seed=seed,
        timeseries_points=timeseries_points, cuped=cuped,
        pre_period=PrePeriod(pre_experiment, parse_time(pre_since, "--pre-since"),
                             parse_time(pre_until, "--pre-until"),
                             tuple(m.strip() for m in pre_modes.split(",") if m.strip())),
        margins=parse_pairs(margin, "--margin"), aggregation=aggregation,  # type: ignore[arg-type]
        exclusions=ExclusionRules(max_searches_per_day, min_click_ms, exclude_crawlers, winsorize),
    )
    offline = _offline_evidence(evaluation, replay_report, html)
    if engine not in ("sql", "spark"):
        raise ConfigError(f"--engine {engine!r}: use sql or spark")
    st = open_store(store)  # never creates or migrates: analysis only reads
    if engine == "spark":
        from abharness.stores.parquet import ParquetStore
        from abharness.stores.spark import SparkParquetStore

        if not isinstance(st, ParquetStore):
            st.close()
            raise ConfigError(f"--engine spark reads a Parquet export, not {store!r}; run `abharness export` and "
                              "pass --store parquet:///DIR")
        st.close()
        st = SparkParquetStore(st.root, url=st.url)
    if serve_metrics:
        if interval <= 0:
            raise ConfigError(f"--interval {interval}: must be a positive number of seconds (e.g. 30)")
        try:
            _serve_metrics(st, experiment, cfg, options, metric, segment, parse_time(since, "--since"),
                           parse_time(until, "--until"), metrics_host, metrics_port, interval, err)
        finally:
            st.close()
        raise typer.Exit(0)
    try:
        with err.status("analysing…") as status:
            report = analyze(st, experiment, config=cfg, since=parse_time(since, "--since"),
                             until=parse_time(until, "--until"), metrics=metric, segment=segment,
                             options=options, progress=lambda msg: status.update(msg))
    finally:
        st.close()
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    else:
        render_report(report, Console())
    if html is not None:
        import time

        from abharness.report.results import write_results_html

        page = write_results_html(report.to_dict(), html, offline=offline, generated_at=time.time())
        err.print(f"results page: {page}", highlight=False)
    raise typer.Exit(report.exit_code)


def _offline_evidence(evaluation: Path | None, replay: Path | None, html: Path | None) -> list[dict]:
    """The offline verdicts to show beside the online one (read before analysing, so a bad path fails fast)."""
    if (evaluation is not None or replay is not None) and html is None:
        raise ConfigError("--evaluation/--replay are shown on the results page: add --html DIR")
    from abharness.report.results import load_json_report, offline_verdicts

    return offline_verdicts(
        evaluation=load_json_report(evaluation, "report.json", "--evaluation") if evaluation is not None else None,
        replay=load_json_report(replay, "replay.json", "--replay") if replay is not None else None,
    )


def _serve_metrics(store, experiment, cfg, options, metric, segment, since, until, host, port, interval, err) -> None:
    """Run the experiment-statistics exporter in the foreground (see abharness.analysis.exporter)."""
    from abharness.analysis import analyze
    from abharness.analysis.exporter import serve_experiment_metrics

    def run_analysis():
        return analyze(store, experiment, config=cfg, since=since, until=until, metrics=metric, segment=segment,
                       options=options)

    runs = serve_experiment_metrics(
        store, experiment, interval_s=interval, port=port, host=host, config=cfg, analyze=run_analysis,
        on_start=lambda server: err.print(
            f"exporting experiment statistics for {experiment!r} on {server.url} "
            f"every {interval:g} s (Ctrl-C or SIGTERM stops)", highlight=False),
    )
    err.print(f"stopped after {runs} analyses", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``analyze`` to the ``abharness`` command."""
    app.command("analyze", help=analyze_command.__doc__)(analyze_command)

