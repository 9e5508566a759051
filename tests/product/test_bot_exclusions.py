"""Bots and outliers: planted bots (a few units with thousands of searches and random fast clicks) swing an A/A
comparison; the exclusion rules remove exactly them, report what each rule removed per arm, run SRM before and
after, and the decision uses the filtered data."""

from __future__ import annotations

import numpy as np
import pytest

from abharness.analysis import AnalysisOptions, analyze
from abharness.analysis.exclusions import ExclusionRules
from abharness.core.assignment import assign
from abharness.core.events import Click, Impression, ShownResult
from abharness.errors import ConfigError
from abharness.stores import open_store

EXP, SALT = "bots", "salt-bots"
W = {"baseline": 0.5, "finetuned": 0.5}
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
BOT_AGENTS = ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "python-requests/2.31.0",
              CHROME, CHROME, CHROME, CHROME]  # four bots pretend to be a browser: only their volume gives them away
DAY0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _impression(iid, unit, arm, ts, ua, rng):
    docs = [f"d{j}" for j in rng.choice(500, 10, replace=False)]
    return Impression(iid, EXP, ts, unit, arm, "ab", "q", 10,
                      tuple(ShownResult(d, p + 1, 1.0 / (p + 1), arm) for p, d in enumerate(docs)),
                      fingerprints={arm: {"model": arm, "index": "i"}}, latency_ms=float(rng.uniform(5, 15)),
                      context={"user_agent": ua})


def plant(store, *, humans: int = 3000, bots: int = 6, seed: int = 7) -> list[str]:
    """A/A traffic (both arms click 30 % of their lists, 2-20 s after the results) plus ``bots`` units in the
    treatment, each with 2,000-4,000 searches in one day and random clicks on 90 % of them 20-80 ms later."""
    rng = np.random.default_rng(seed)
    events: list = []
    for u in range(humans):
        unit = f"user{u}"
        arm = assign(SALT, unit, W)
        for s in range(int(rng.integers(1, 9))):
            ts = DAY0 + float(rng.uniform(0, 7 * 86400))
            imp = _impression(f"h{u}-{s}", unit, arm, ts, CHROME, rng)
            events.append(imp)
            if rng.random() < 0.30:
                pos = int(min(rng.geometric(0.35), 10))
                events.append(Click(imp.impression_id, EXP, unit, arm, ts + float(rng.uniform(2, 20)),
                                    imp.results[pos - 1].doc_id, pos, arm))
    planted = []
    candidates = (f"bot{i}" for i in range(10_000))
    while len(planted) < bots:
        unit = next(candidates)
        if assign(SALT, unit, W) != "finetuned":
            continue
        planted.append(unit)
        ua = BOT_AGENTS[len(planted) - 1]
        for s in range(int(rng.integers(2000, 4001))):
            ts = DAY0 + 86400 * 2 + s * 20.0
            imp = _impression(f"{unit}-{s}", unit, "finetuned", ts, ua, rng)
            events.append(imp)
            if rng.random() < 0.9:
                pos = int(rng.integers(1, 11))
                events.append(Click(imp.impression_id, EXP, unit, "finetuned", ts + float(rng.uniform(0.02, 0.08)),
                                    imp.results[pos - 1].doc_id, pos, "finetuned"))
    for i in range(0, len(events), 5000):
        store.write_batch(events[i:i + 5000])
    return planted


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory):
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('bots') / 'events.db'}")
    bots = plant(store)
    yield store, bots
    store.close()


RULES = ExclusionRules(max_searches_per_day=200, min_click_delay_ms=300, crawler_user_agents=True,
                       winsorize_percentile=99.5)


def _opts(rules: ExclusionRules | None = None, **kw) -> AnalysisOptions:
    return AnalysisOptions(control="baseline", weights=W, bootstrap_samples=0, timeseries_points=0, cuped=False,
                           basis="fixed", exclusions=rules or ExclusionRules(), **kw)


@pytest.mark.slow
def test_planted_bots_flip_the_verdict_and_the_rules_remove_exactly_them(planted_store):
    store, bots = planted_store
    raw = analyze(store, EXP, options=_opts())
    clean = analyze(store, EXP, options=_opts(RULES))
    ctr_raw, ctr_clean = raw.metrics["ctr"], clean.metrics["ctr"]
    print(f"\nwithout rules: units {raw.units} ctr {ctr_raw.control.value:.4f} -> {ctr_raw.treatment.value:.4f} "
          f"lift {ctr_raw.relative_lift:+.1%} p={ctr_raw.p_value:.2g} decision {raw.decision}")
    print(f"with rules:    units {clean.units} ctr {ctr_clean.control.value:.4f} -> "
          f"{ctr_clean.treatment.value:.4f} lift {ctr_clean.relative_lift:+.1%} p={ctr_clean.p_value:.2g} "
          f"decision {clean.decision}")
    for e in clean.exclusions.effects:
        print(f"  {e.rule}: units {e.units} impressions {e.impressions} clicks {e.clicks}")
    print(f"  SRM before p={clean.exclusions.srm_before.p_value:.3f}, after p={clean.srm.p_value:.3f}")
    # unfiltered: the bots make an A/A look like a big, "significant" CTR win
    assert ctr_raw.p_value < 1e-6 and ctr_raw.relative_lift > 0.5 and raw.decision == "ship"
    # filtered: no effect, as planted
    assert ctr_clean.p_value > 0.01 and abs(ctr_clean.relative_lift) < 0.1 and clean.decision != "ship"
    effects = {e.rule: e for e in clean.exclusions.effects}
    assert effects["crawler user agent"].units == {"baseline": 0, "finetuned": 2}
    assert effects["more than 200 searches on a day"].units == {"baseline": 0, "finetuned": 4}
    assert "clicks faster than 300 ms" not in effects  # the earlier rules already took every bot
    assert sum(e.units["finetuned"] for e in effects.values() if not e.rule.startswith("winsor")) == len(bots)
    removed_imps = sum(e.impressions["finetuned"] for e in effects.values() if not e.rule.startswith("winsor"))
    assert removed_imps == store.execute(
        "SELECT COUNT(*) FROM impressions WHERE unit_id LIKE 'bot%'")[0][0]
    assert clean.exclusions.units_before["finetuned"] - clean.exclusions.units_after["finetuned"] == len(bots)
    assert clean.exclusions.srm_before is not None and not clean.srm.alarm


@pytest.mark.slow
def test_each_rule_alone_catches_what_it_should(planted_store):
    store, bots = planted_store
    fast = analyze(store, EXP, options=_opts(ExclusionRules(min_click_delay_ms=300)))
    [effect] = fast.exclusions.effects
    assert effect.units == {"baseline": 0, "finetuned": len(bots)}  # humans click after 2 s or more
    crawlers = analyze(store, EXP, options=_opts(ExclusionRules(crawler_user_agents=True)))
    assert crawlers.exclusions.effects[0].units["finetuned"] == 2
    wins = analyze(store, EXP, options=_opts(ExclusionRules(winsorize_percentile=99.5)))
    [w] = wins.exclusions.effects
    assert w.units["finetuned"] >= len(bots) and wins.units == raw_units(store)
    # winsorizing alone shrinks the bots' weight a lot (the lift falls) without removing anyone
    assert wins.metrics["ctr"].relative_lift < analyze(store, EXP, options=_opts()).metrics["ctr"].relative_lift / 4


def raw_units(store) -> dict[str, int]:
    return analyze(store, EXP, options=_opts()).units


def test_rules_from_the_experiment_file_and_their_validation(planted_store):
    from abharness.testing.configs import make_config

    cfg = make_config(exclusions={"max_searches_per_day": 200})
    assert AnalysisOptions().with_config(cfg).exclusions.max_searches_per_day == 200
    with pytest.raises(ConfigError, match="winsorize_percentile"):
        ExclusionRules(winsorize_percentile=30).validated()
    with pytest.raises(ConfigError):
        make_config(exclusions={"winsorize_percentile": 120})


@pytest.mark.slow
def test_analyze_cli_options_apply_the_rules(planted_store):
    import json

    from typer.testing import CliRunner

    from abharness.cli.main import build_app

    store, _ = planted_store
    args = ["analyze", "--store", store.url, "--experiment", EXP, "--control", "baseline",
            "--weights", "baseline=0.5,finetuned=0.5", "--bootstrap", "0", "--timeseries-points", "0", "--no-cuped",
            "--basis", "fixed"]
    raw = CliRunner().invoke(build_app(), [*args, "--json"])
    filtered = CliRunner().invoke(build_app(), [*args, "--json", "--max-searches-per-day", "200",
                                                "--exclude-crawlers", "--min-click-ms", "300"])
    assert raw.exit_code == 0, raw.output  # ship: the bots' clicks look like a win
    assert filtered.exit_code == 10, filtered.output  # keep-running once they are out
    report = json.loads(filtered.stdout)
    assert {e["rule"]: e["units"]["finetuned"] for e in report["exclusions"]["effects"]} == {
        "crawler user agent": 2, "more than 200 searches on a day": 4}
    table = CliRunner().invoke(build_app(), [*args, "--max-searches-per-day", "200"])
    assert "excluded before any statistic" in table.stdout and "more than 200 searches" in table.stdout


def test_bot_rules_apply_to_the_interleaving_test(tmp_path):
    """Interleaving: 300 humans without preference, 3 bots that always click the treatment's results at once."""
    rng = np.random.default_rng(5)
    store = open_store(f"sqlite:///{tmp_path / 'inter.db'}")
    events: list = []

    def search(unit: str, iid: str, ts: float, ua: str, bot: bool) -> None:
        teams = ["baseline", "finetuned"] * 5
        results = tuple(ShownResult(f"d{j}", j + 1, 1.0, teams[j]) for j in range(10))
        events.append(Impression(iid, EXP, ts, unit, "interleaved", "interleave", "q", 10, results,
                                 context={"user_agent": ua}))
        if bot:
            events.append(Click(iid, EXP, unit, "interleaved", ts + 0.03, "d1", 2, "finetuned"))
        elif rng.random() < 0.4:
            pos = int(rng.integers(1, 11))
            events.append(Click(iid, EXP, unit, "interleaved", ts + 5, f"d{pos - 1}", pos, teams[pos - 1]))

    for u in range(300):
        for s in range(5):
            search(f"user{u}", f"h{u}-{s}", DAY0 + u * 100 + s, CHROME, False)
    for b in range(3):
        for s in range(1500):
            search(f"bot{b}", f"b{b}-{s}", DAY0 + 86400 + s * 30, CHROME, True)
    store.write_batch(events)
    raw = analyze(store, EXP, options=_opts())
    clean = analyze(store, EXP, options=_opts(ExclusionRules(max_searches_per_day=200)))
    print(f"\ninterleaving without rules: units {raw.interleaving.units} preference {raw.interleaving.preference:+.4f}"
          f" p={raw.interleaving.p_value:.2g}; with rules: units {clean.interleaving.units} preference "
          f"{clean.interleaving.preference:+.4f} p={clean.interleaving.p_value:.2g}")
    assert raw.interleaving.units - clean.interleaving.units == 3
    assert any("the bot rules removed 3 units" in d for d in clean.diagnostics)
    store.close()
