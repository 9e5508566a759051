"""The evaluate use case and CLI end to end on a small data directory, with fake (hashing) encoders; the real
MiniLM only where the thing under test is model loading."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from abharness.cli.main import build_app
from abharness.data import load_beir, text_sha256
from abharness.errors import AbharnessError, DataError
from abharness.evaluation import REPORT_SCHEMA, evaluate, load_suite, validate_report
from abharness.evaluation.summary import summary_lines
from abharness.report.evaluation import SECTION_TITLES


def _manifest(data: Path, leak: int) -> dict:
    """A fine-tuning manifest over the mini SciFact train split, with ``leak`` test queries planted in it."""
    train = load_beir(data / "scifact", "train")
    test = load_beir(data / "scifact", "test")
    planted = sorted(test.queries)[:leak]
    texts = [train.queries[q] for q in train.queries] + [test.queries[q].upper() + "  " for q in planted]
    return {
        "base_model": "hash-a", "data_path": str(data / "scifact"), "split": "train",
        "query_ids": sorted(train.queries), "doc_ids": sorted({d for q in train.qrels for d in train.qrels[q]}),
        "pairs": [[q, d] for q in train.qrels for d in train.qrels[q]],
        "query_texts_sha256": [text_sha256(t) for t in texts],
    }


@pytest.fixture(scope="module")
def full_run(mini_data: Path, tmp_path_factory: pytest.TempPathFactory, small: dict, hash_encoder):
    HashEncoder, SMALL = hash_encoder, small
    out = tmp_path_factory.mktemp("report")
    mp = pytest.MonkeyPatch()
    mp.setenv("ABHARNESS_CACHE", str(out.parent / "cache-full"))
    suite = load_suite(None, overrides={**SMALL, "maps": {"sample": 60, "method": "umap"}})
    try:
        report = evaluate(HashEncoder("a", 0), HashEncoder("b", 1), suite, out, data_dir=mini_data,
                          manifest=_manifest(mini_data, leak=3), progress=False)
    finally:
        mp.undo()
    return report, out


def test_report_files_and_every_section(full_run) -> None:
    report, out = full_run
    for name in ("report.html", "report.json", "report.schema.json", "plotly.min.js"):
        assert (out / name).is_file(), name
    page = (out / "report.html").read_text(encoding="utf-8")
    for name, title in SECTION_TITLES.items():
        assert f'data-section="{name}"' in page and title in page
    assert "cdn.plot.ly" not in page and "<script src='plotly.min.js'>" in page
    assert page.count("plotly-graph-div") >= 7  # figures rendered inline, library loaded from disk
    assert set(report.checks) == set(SECTION_TITLES)
    assert all(c["verdict"] != "skipped" for c in report.checks.values())


def test_json_validates_against_package_schema(full_run) -> None:
    _, out = full_run
    payload = json.loads((out / "report.json").read_text(encoding="utf-8"))
    schema = json.loads((out / "report.schema.json").read_text(encoding="utf-8"))
    assert schema == REPORT_SCHEMA
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(payload, schema, cls=jsonschema.Draft202012Validator)
    broken = json.loads(json.dumps(payload))
    broken["checks"]["retrieval"]["metrics"][0]["p_value"] = 1.5
    with pytest.raises(AbharnessError, match="checks/retrieval/metrics/0/p_value"):
        validate_report(broken)
    del broken["checks"]["sts"]
    with pytest.raises(AbharnessError):
        validate_report(broken)


def test_planted_leaks_fail_loudly_and_are_removed(full_run) -> None:
    report, _ = full_run
    leak = report.checks["leakage"]
    assert leak["verdict"] == "fail" and report.failed
    assert leak["exact_count"] == 3 and leak["leaked_fraction"] == pytest.approx(3 / leak["n_test_queries"])
    assert leak["retrieval_without_leaked"]["n_queries"] == report.checks["retrieval"]["n_queries"] - 3
    assert any(line.startswith("leakage") and "FAIL" in line for line in summary_lines(report.to_dict()))


def test_retrieval_numbers_are_consistent(full_run) -> None:
    r = full_run[0].checks["retrieval"]
    assert [m["metric"] for m in r["metrics"]] == ["recall@10", "mrr@10", "ndcg@10", "map@100"]
    for m in r["metrics"]:
        assert m["wins"] + m["ties"] + m["losses"] == r["n_queries"]
        assert m["delta"] == pytest.approx(m["candidate"] - m["baseline"])
        assert m["p_holm"] >= m["p_value"]
    assert all(w["delta"] < 0 for w in r["worst_queries"]) and all(w["query"] for w in r["worst_queries"])


def test_clean_manifest_passes(mini_data: Path, tmp_path: Path, eval_cache: Path, hash_encoder) -> None:
    HashEncoder = hash_encoder
    suite = load_suite(None, overrides={"n_resamples": 200}).model_copy()
    only = {n: getattr(suite, n).model_copy(update={"enabled": n in {"retrieval", "leakage"}})
            for n in ("retrieval", "sts", "classification", "clustering", "geometry", "probes", "leakage",
                      "overfitting", "maps")}
    suite = suite.model_copy(update=only)
    report = evaluate(HashEncoder("a", 0), HashEncoder("b", 1), suite, None, data_dir=mini_data,
                      manifest=_manifest(mini_data, leak=0), progress=False)
    leak = report.checks["leakage"]
    assert leak["verdict"] == "pass" and leak["exact_count"] == 0 and leak["near_count"] == 0
    assert report.checks["sts"]["verdict"] == "skipped" and not report.failed


def test_identical_models_change_nothing(mini_data: Path, eval_cache: Path, small: dict, hash_encoder) -> None:
    HashEncoder, SMALL = hash_encoder, small
    suite = load_suite(None, overrides={**SMALL, "maps": {"enabled": False}, "classification": {"enabled": False}})
    enc = HashEncoder("same", 0)
    report = evaluate(enc, enc, suite, None, data_dir=mini_data, progress=False)
    r = report.checks["retrieval"]
    assert r["verdict"] == "no-change" and all(m["delta"] == 0 and m["p_value"] == 1 for m in r["metrics"])
    assert report.checks["overfitting"]["verdict"] == "pass"
    assert report.checks["probes"]["as_expected"] == 0 and report.checks["probes"]["verdict"] == "warn"
    assert all(v["spearman_delta"] == 0 for v in report.checks["sts"]["sets"].values())


def test_missing_dataset_is_a_clear_error_before_any_work(tmp_path: Path, hash_encoder) -> None:
    HashEncoder = hash_encoder
    with pytest.raises(DataError, match=r"data set 'scifact' .*not found.*--data"):
        evaluate(HashEncoder("a"), HashEncoder("b"), None, None, data_dir=tmp_path, progress=False)


# ---------------------------------------------------------------- CLI
def _cli(*args: str):
    return CliRunner().invoke(build_app(), ["evaluate", *args])


def test_cli_help() -> None:
    result = _cli("--help")
    assert result.exit_code == 0 and "--baseline" in result.output and "--suite" in result.output


def test_cli_bad_model_path(tmp_path: Path, mini_data: Path) -> None:
    result = _cli("--baseline", "minilm", "--candidate", str(tmp_path / "no-such-model"), "--data-root", str(mini_data),
                  "--out", str(tmp_path / "out"), "--only", "probes", "--quiet")
    assert result.exit_code == 2
    assert "no-such-model" in result.output and "Traceback" not in result.output


def test_cli_missing_dataset(tmp_path: Path) -> None:
    result = _cli("--baseline", "minilm", "--candidate", "minilm", "--data-root", str(tmp_path), "--out",
                  str(tmp_path / "out"), "--quiet")
    assert result.exit_code == 2 and "not found" in result.output and "Traceback" not in result.output


def test_cli_bad_probe_line(tmp_path: Path, mini_data: Path) -> None:
    probes = tmp_path / "probes.tsv"
    probes.write_text("closer\tfine\tpair\nsideways\ta\tb\n", encoding="utf-8")
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"probes: {{file: {json.dumps(str(probes))}}}\n", encoding="utf-8")
    result = _cli("--baseline", "minilm", "--candidate", "minilm", "--data-root", str(mini_data), "--suite", str(suite),
                  "--out", str(tmp_path / "out"), "--only", "probes", "--quiet")
    assert result.exit_code == 2 and f"{probes}:2" in result.output and "sideways" in result.output


def test_cli_unknown_check(tmp_path: Path, mini_data: Path) -> None:
    result = _cli("--baseline", "minilm", "--candidate", "minilm", "--data-root", str(mini_data), "--out",
                  str(tmp_path / "o"), "--only", "retrieval,vibes")
    assert result.exit_code == 2 and "vibes" in result.output and "retrieval" in result.output


def test_quick_run_samples_the_in_domain_collection(mini_data: Path, eval_cache: Path, hash_encoder) -> None:
    suite = load_suite(None, overrides={
        "n_resamples": 200, "retrieval": {"sample_queries": 5, "sample_distractors": 10},
        "overfitting": {"sets": [{"dataset": "cranfield", "sample_queries": 4, "sample_distractors": 5}]},
        **{n: {"enabled": False} for n in ("sts", "classification", "clustering", "probes", "leakage", "maps")}})
    report = evaluate(hash_encoder("a"), hash_encoder("b", 1), suite, None, data_dir=mini_data, progress=False)
    assert report.checks["retrieval"]["n_queries"] == 5
    assert report.checks["overfitting"]["sets"]["cranfield/test"]["n_queries"] == 4
    assert report.checks["geometry"]["n_qrels_pairs"] >= 5


def test_malformed_dataset_names_file_and_line(mini_data: Path, tmp_path: Path, eval_cache: Path,
                                               hash_encoder) -> None:
    broken = tmp_path / "data"
    broken.mkdir()
    (broken / "scifact").mkdir()
    for f in ("corpus.jsonl", "queries.jsonl"):
        (broken / "scifact" / f).write_bytes((mini_data / "scifact" / f).read_bytes())
    (broken / "scifact" / "qrels").mkdir()
    (broken / "scifact" / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1 d1 1\n", encoding="utf-8")
    suite = load_suite(None, overrides={n: {"enabled": False} for n in (
        "sts", "classification", "clustering", "geometry", "probes", "leakage", "overfitting", "maps")})
    with pytest.raises(DataError, match=r"qrels/test.tsv:2"):
        evaluate(hash_encoder("a"), hash_encoder("b"), suite, None, data_dir=broken, progress=False)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_report_page_and_the_results_page_beside_it_render_in_chromium(full_run, tmp_path: Path) -> None:
    """The evaluation page in a real headless Chromium (every plot drawn, no console error, nothing fetched off
    the machine), and an online results page carrying this evaluation's verdict beside the online one."""
    import os

    from abharness.stores import open_store
    from abharness.testing.browser import browser, check_page, chromium_or_skip
    from abharness.testing.experiments import write_experiment

    exe = chromium_or_skip()
    shots = Path(os.environ.get("ABHARNESS_ARTIFACTS", tmp_path))
    _, out = full_run
    store_url = f"sqlite:///{tmp_path / 'events.db'}"
    st = open_store(store_url)
    try:
        write_experiment(st, "exp-eval", units=600, days=3, seed=3)
    finally:
        st.close()
    res = CliRunner().invoke(build_app(), ["analyze", "--store", store_url, "--experiment", "exp-eval",
                                           "--bootstrap", "0", "--html", str(tmp_path / "results"),
                                           "--evaluation", str(out)])
    assert res.exit_code in (0, 10, 20), res.output
    verdict = json.loads((out / "report.json").read_text(encoding="utf-8"))["checks"]["retrieval"]["verdict"]
    with browser(exe) as b:
        check = check_page(b, (out / "report.html").as_uri(), shots / "evaluation.png")
        print(f"\nscreenshot: {check.screenshot} ({check.figures_with_svg}/{check.figures} figures drawn)")
        assert not check.problems, check.problems
        assert check.figures >= 7 and all(t in check.text for t in SECTION_TITLES.values())
        results = check_page(b, (tmp_path / "results" / "index.html").as_uri(), shots / "results-with-evaluation.png",
                             evaluate={"cards": "() => [...document.querySelectorAll('.card')].map(c => "
                                                "[c.dataset.source, c.querySelector('.badge').textContent])"})
        print(f"screenshot: {results.screenshot} ({results.figures_with_svg}/{results.figures} figures drawn)")
        assert not results.problems, results.problems
        assert results.extra["cards"][1] == ["offline evaluation", verdict]
