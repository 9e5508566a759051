"""The demo's verdict table (pure over the stage results), its terminal rendering and the HTML index page."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["verdicts", "render_summary", "write_index", "direction_of_interval"]

WORDS = {1: "finetuned better", -1: "finetuned worse", 0: "no significant difference"}


def direction_of_interval(lower: float | None, upper: float | None) -> int:
    """+1 when the interval lies above 0, -1 below, 0 when it covers 0 or is undefined."""
    if lower is None or upper is None or not (math.isfinite(lower) and math.isfinite(upper)):
        return 0
    return 1 if lower > 0 else (-1 if upper < 0 else 0)


def _first_significant_units(ab: Any) -> int | None:
    for p in ab.timeseries:
        if direction_of_interval(p.seq_lower, p.seq_upper) != 0:
            return int(p.units)
    return None


def verdicts(*, evaluation: dict, ab: Any, interleave: Any, replay: Any, sensitivity: Any, sim_ab: Any,
             sim_il: Any) -> dict[str, Any]:
    """One row per method: its verdict, the numbers behind it, and the traffic it needed."""
    rows: dict[str, dict[str, Any]] = {}
    ret = evaluation.get("checks", {}).get("retrieval", {})
    prim = next((r for r in ret.get("metrics", []) if r.get("metric") == ret.get("primary_metric")), None)
    off_dir = {"improved": 1, "regressed": -1}.get(str(ret.get("verdict")), 0)
    rows["offline"] = {
        "direction": off_dir, "verdict": WORDS[off_dir],
        "evidence": (f"{prim['metric']} {prim['baseline']:.4f} -> {prim['candidate']:.4f} "
                     f"(delta {prim['delta']:+.4f}, 95% CI [{prim['ci'][0]:+.4f}, {prim['ci'][1]:+.4f}], "
                     f"Holm p={prim['p_holm']:.3g})") if prim else str(ret.get("headline", "no retrieval check")),
        "traffic": f"no live traffic; {ret.get('n_queries', '?')} judged test queries",
        "impressions": 0,
    }
    q = replay.qrels.get("ndcg@10")
    c = replay.offline_click.get("mrr")
    rep_dir = direction_of_interval(q.ci_low, q.ci_high) if q else 0
    rows["replay"] = {
        "direction": rep_dir, "verdict": WORDS[rep_dir],
        "evidence": (f"qrels nDCG@10 delta {q.delta:+.4f} [{q.ci_low:+.4f}, {q.ci_high:+.4f}] on "
                     f"{replay.qrels_queries} logged queries" if q else "no qrels")
        + (f"; click-label MRR delta {c.delta:+.4f} [{c.lower:+.4f}, {c.upper:+.4f}]" if c else ""),
        "traffic": f"re-ran {replay.impressions:,} logged impressions ({replay.distinct_queries} distinct queries); "
                   "no new traffic",
        "impressions": 0,
    }
    m = ab.metrics.get(ab.primary)
    ab_dir = {"ship": 1, "rollback": -1}.get(ab.decision, 0)
    first = _first_significant_units(ab)
    needed_ab = sensitivity.primary_ab.impressions_needed
    if ab_dir == 0 and m is not None and direction_of_interval(m.lift_lower, m.lift_upper) != 0:
        ab_words = "fixed-horizon CI excludes 0, the always-valid interval does not yet"
    else:
        ab_words = WORDS[ab_dir]
    rows["ab"] = {
        "direction": ab_dir, "verdict": f"{ab.decision} ({ab_words})",
        "evidence": (f"{ab.primary} {m.control.value:.4f} -> {m.treatment.value:.4f} (lift {m.lift:+.4f}, 95% CI "
                     f"[{m.lift_lower:+.4f}, {m.lift_upper:+.4f}], p={m.p_value:.3g}, always-valid p="
                     f"{m.always_valid_p:.3g})") if m else "no primary metric",
        "traffic": (f"used {sim_ab.searches:,} impressions ({sum(ab.units.values()):,} users); needs "
                    f"{needed_ab:,} for 80% power (simulated)"
                    + (f"; always-valid interval first excluded 0 at {first:,} users" if first else "")),
        "impressions": sim_ab.searches, "needed_for_80pct_power": needed_ab,
    }
    il = interleave.interleaving
    il_dir = direction_of_interval(il.preference_lower, il.preference_upper) if il else 0
    needed_il = sensitivity.interleaving.impressions_needed
    rows["interleaving"] = {
        "direction": il_dir, "verdict": WORDS[il_dir],
        "evidence": (f"preference {il.preference:+.4f} [{il.preference_lower:+.4f}, {il.preference_upper:+.4f}], "
                     f"p={il.p_value:.3g}; wins finetuned/baseline/ties {il.wins_treatment}/{il.wins_control}/"
                     f"{il.ties}") if il else "no interleaved impressions",
        "traffic": f"used {sim_il.searches:,} impressions; needs {needed_il:,} for 80% power (simulated)",
        "impressions": sim_il.searches, "needed_for_80pct_power": needed_il,
    }
    conclusive = {k: r["direction"] for k, r in rows.items() if r["direction"] != 0}
    if not conclusive:
        agreement = "no method found a significant difference"
    elif len(set(conclusive.values())) == 1:
        agreement = (f"all conclusive verdicts agree ({', '.join(conclusive)}): {WORDS[next(iter(conclusive.values()))]}"
                     + ("" if len(conclusive) == len(rows) else
                        f"; inconclusive: {', '.join(k for k in rows if k not in conclusive)}"))
    else:
        agreement = "verdicts DISAGREE: " + ", ".join(f"{k}: {WORDS[d]}" for k, d in conclusive.items())
    sens = {
        "click_model": sensitivity.click_model, "impressions_per_user": sensitivity.impressions_per_unit,
        "ab_metric": sensitivity.primary_ab_metric, "ab_impressions_needed": needed_ab,
        "interleaving_impressions_needed": needed_il, "ratio": sensitivity.ratio,
        "ab_all": [{"metric": p.metric, "effect": p.effect, "impressions_needed": p.impressions_needed,
                    "predicted": p.predicted_impressions, "simulated": p.simulated} for p in sensitivity.ab],
    }
    return {"rows": rows, "agreement": agreement, "sensitivity": sens,
            "simulation": {"ab": sim_ab.to_dict(), "interleaving": sim_il.to_dict()},
            "replay_agreement": [a.__dict__ if hasattr(a, "__dict__") else
                                 {f: getattr(a, f) for f in a.__slots__} for a in replay.agreement]}


def render_summary(summary: dict[str, Any], console: Console, out: Path) -> None:
    """The closing terminal summary."""
    t = Table(title="Did fine-tuning help? One verdict per method")
    for h in ("method", "verdict", "evidence", "traffic"):
        t.add_column(h, overflow="fold")
    for name, r in summary["rows"].items():
        t.add_row(name, r["verdict"], r["evidence"], r["traffic"])
    console.print(t)
    s = summary["sensitivity"]
    console.print(
        f"[bold]Sensitivity[/] ({s['click_model']} users, {s['impressions_per_user']} searches each, 80% power, "
        f"alpha 0.05): A/B on {s['ab_metric']} needs {s['ab_impressions_needed']:,} impressions, interleaving "
        f"{s['interleaving_impressions_needed']:,}: ratio {s['ratio']:.1f}x"
    )
    console.print(f"[bold]Agreement:[/] {summary['agreement']}")
    console.print(f"wall time {summary['wall_seconds']:.0f} s; report: {out / 'index.html'}")


def write_index(summary: dict[str, Any], out: Path, links: dict[str, str]) -> Path:
    """``index.html``: the verdict table, sensitivity, stage timings, and links to every report."""
    from abharness.report.html import Page, esc, table_html, write_page

    page = Page("abharness demo: did fine-tuning help?", f"agreement: {summary['agreement']}")
    page.section("verdicts", "Verdicts", table_html(
        ["method", "verdict", "evidence", "traffic"],
        [[k, r["verdict"], r["evidence"], r["traffic"]] for k, r in summary["rows"].items()], left=(0, 1, 2, 3)))
    s = summary["sensitivity"]
    page.section("sensitivity", "Interleaving vs A/B sensitivity", table_html(
        ["method", "metric", "effect", "predicted impressions", "impressions for 80% power", "simulated"],
        [["A/B", a["metric"], a["effect"], a["predicted"], a["impressions_needed"], a["simulated"]]
         for a in s["ab_all"]] + [["interleaving", "preference", None, None, s["interleaving_impressions_needed"], True]],
        left=(0, 1)) + f"<p>ratio (A/B {esc(s['ab_metric'])} / interleaving): {s['ratio']:.1f}</p>")
    page.section("stages", "Stages", table_html(
        ["stage", "seconds", "reused", "note"],
        [[st["name"], st["seconds"], st["reused"], st["note"]] for st in summary.get("stages", [])], left=(0, 3)))
    items = {"A/B results page": links.get("ab"), "interleaving results page": links.get("interleave"),
             "offline evaluation": links.get("evaluation"), "replay": links.get("replay"),
             "A/B analysis (JSON)": "analysis-ab.json", "interleaving analysis (JSON)": "analysis-interleave.json",
             "sensitivity (JSON)": "sensitivity.json", "summary (JSON)": "summary.json"}
    page.section("reports", "Reports", "<ul>" + "".join(
        f'<li><a href="{esc(href)}">{esc(name)}</a></li>' for name, href in items.items() if href) + "</ul>")
    return write_page(page, out, "index.html")
