"""The data / index / finetune commands: help text, happy paths, one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abharness.cli.main import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv", [["finetune", "--help"], ["index", "build", "--help"], ["index", "info", "--help"],
             ["data", "check", "--help"], ["data", "fetch", "--help"]],
)
def test_every_command_has_help(argv, capsys) -> None:
    code, out, _ = _run(argv, capsys)
    assert code == 0 and "Usage" in out and len(out) > 200


def test_data_check_real_sets(shared_data: Path, capsys) -> None:
    code, out, _ = _run(["data", "check", "--data", str(shared_data / "scifact")], capsys)
    assert code == 0 and "5183" in out and "809" in out and "300" in out
    code, out, _ = _run(["data", "check", "--data", str(shared_data / "trec_qc"), "--kind", "trec"], capsys)
    assert code == 0 and "5452" in out
    code, _, err = _run(["data", "check", "--data", str(shared_data / "cranfield")], capsys)
    assert code == 2 and "corpus.jsonl.gz:471" in err and "--allow-empty-docs" in err
    code, out, _ = _run(["data", "check", "--data", str(shared_data / "cranfield"), "--allow-empty-docs"], capsys)
    assert code == 0


def test_data_check_malformed_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{"_id": "d1", "text": "y"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    code, _, err = _run(["data", "check", "--data", str(tmp_path)], capsys)
    assert code == 2
    assert "corpus.jsonl:2: duplicate document id 'd1'" in err and "Traceback" not in err
    code, _, err = _run(["data", "check", "--data", str(tmp_path), "--kind", "xml"], capsys)
    assert code == 2 and "valid kinds: beir, stsb, sick, trec" in err


def test_data_fetch_unknown_name(tmp_path: Path, capsys) -> None:
    code, _, err = _run(["data", "fetch", "not-a-set", "--cache-dir", str(tmp_path)], capsys)
    assert code == 2 and "pass --data DIR" in err


@pytest.mark.model
def test_index_build_and_info(tmp_path: Path, capsys) -> None:
    data = tmp_path / "tiny"
    (data / "qrels").mkdir(parents=True)
    docs = ["aspirin and heart attacks", "genes in mice", "the brain and sleep", "viral infections in children"]
    (data / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": t}) + "\n" for i, t in enumerate(docs)))
    out = tmp_path / "idx"
    code, stdout, err = _run(["index", "build", "--model", "minilm", "--data", str(data), "--out", str(out),
                              "--no-progress", "--no-cache"], capsys)
    assert code == 0, err
    assert "flat index of 4 docs" in stdout
    code, stdout, _ = _run(["index", "info", str(out), "--json"], capsys)
    info = json.loads(stdout)
    assert code == 0 and info["num_docs"] == 4 and info["model_name"] == "minilm" and info["kind"] == "flat"
    code, _, err = _run(["index", "build", "--model", "minilm", "--data", str(data), "--out", str(out)], capsys)
    assert code == 2 and "--overwrite" in err
    code, _, err = _run(["index", "build", "--model", str(tmp_path), "--data", str(data), "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "not a sentence-transformers model directory" in err
    code, _, err = _run(["index", "info", str(tmp_path)], capsys)
    assert code == 2 and "is not an abharness index" in err


def test_finetune_bad_input(tmp_path: Path, capsys) -> None:
    code, _, err = _run(["finetune", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "m")], capsys)
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    code, _, err = _run(["finetune", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--batch-size", "1"], capsys)
    assert code == 2 and "batch_size=1" in err
