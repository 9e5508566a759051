"""Loaders accept the real files in ../shared/data and reject malformed ones with file:line errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from abharness.data import (
    corpus_hash,
    dataset_hash,
    load_beir,
    load_sick,
    load_stsb,
    load_trec,
    normalize_text,
    slice_dataset,
    text_sha256,
)
from abharness.errors import ConfigError, DataError


# ---------------------------------------------------------------- real files
def test_scifact_real_counts(shared_data: Path) -> None:
    test = load_beir(shared_data / "scifact", "test")
    train = load_beir(shared_data / "scifact", "train")
    assert len(test.corpus) == 5183
    assert (len(test.queries), sum(map(len, test.qrels.values()))) == (300, 339)
    assert (len(train.queries), sum(map(len, train.qrels.values()))) == (809, 919)
    assert not set(test.queries) & set(train.queries)
    assert test.corpus_hash == train.corpus_hash and len(test.corpus_hash) == 64
    assert dataset_hash(test) != dataset_hash(train)


def test_cranfield_graded_and_empty_docs(shared_data: Path) -> None:
    with pytest.raises(DataError, match=r"corpus\.jsonl\.gz:471: document '471' has an empty title and text"):
        load_beir(shared_data / "cranfield", "train")
    ds = load_beir(shared_data / "cranfield", "train", empty_docs="keep")
    assert ds.meta["empty_docs"] == "471,995"
    assert {score for rels in ds.qrels.values() for score in rels.values()} == {1, 2, 3, 4}


def test_cisi_real_counts(shared_data: Path) -> None:
    train = load_beir(shared_data / "cisi", "train")
    test = load_beir(shared_data / "cisi", "test")
    assert len(train.corpus) == 1460
    assert (len(train.queries), sum(map(len, train.qrels.values()))) == (51, 2101)
    assert (len(test.queries), sum(map(len, test.qrels.values()))) == (25, 1013)


def test_sentence_sets_real_counts(shared_data: Path) -> None:
    assert [len(load_stsb(shared_data / "stsbenchmark", s)) for s in ("train", "dev", "test")] == [5749, 1500, 1379]
    assert [len(load_sick(shared_data / "sick", s)) for s in ("train", "trial", "test")] == [4439, 495, 4906]
    assert len(load_sick(shared_data / "sick", "dev")) == 495
    train = load_trec(shared_data / "trec_qc", "train")
    test = load_trec(shared_data / "trec_qc", "test")
    assert (len(train), len(test)) == (5452, 500)
    assert len({t.coarse for t in train}) == 6 and len({t.fine for t in train}) == 50
    assert any(not t.text.isascii() for t in train)  # the one Latin-1 byte decodes
    first = load_stsb(shared_data / "stsbenchmark", "test")[0]
    assert 0.0 <= first.score <= 5.0 and "\t" not in first.s2


def test_stsb_extra_columns_are_ignored(shared_data: Path) -> None:
    raw = (shared_data / "stsbenchmark" / "sts-train.csv").read_text(encoding="utf-8").splitlines()
    extra = [i for i, line in enumerate(raw) if line.count("\t") > 6]
    assert extra, "expected lines with extra columns in the real file"
    pairs = load_stsb(shared_data / "stsbenchmark", "train")
    assert pairs[extra[0]].s2 == raw[extra[0]].split("\t")[6].strip()


# ---------------------------------------------------------------- malformed BEIR
def _beir(tmp_path: Path, corpus: list[str], queries: list[str], qrels: list[str], gz: bool = False) -> Path:
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    body = "\n".join(corpus) + "\n"
    if gz:
        with gzip.open(root / "corpus.jsonl.gz", "wt", encoding="utf-8") as fh:
            fh.write(body)
    else:
        (root / "corpus.jsonl").write_text(body, encoding="utf-8")
    (root / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text("\n".join(["query-id\tcorpus-id\tscore", *qrels]) + "\n", encoding="utf-8")
    return root


def _doc(i: str, text: str = "some text", title: str = "t") -> str:
    return json.dumps({"_id": i, "title": title, "text": text})


def _q(i: str, text: str = "a query") -> str:
    return json.dumps({"_id": i, "text": text})


GOOD_CORPUS = [_doc("d1"), _doc("d2"), _doc("d3")]
GOOD_QUERIES = [_q("q1"), _q("q2")]
GOOD_QRELS = ["q1\td1\t1", "q2\td2\t2"]


@pytest.mark.parametrize("gz", [False, True])
def test_good_tiny_dataset_loads(tmp_path: Path, gz: bool) -> None:
    ds = load_beir(_beir(tmp_path, GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS, gz=gz))
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}}
    assert ds.corpus_hash == corpus_hash(ds.corpus)


def test_corpus_hash_same_for_gz_and_plain(tmp_path: Path) -> None:
    plain = load_beir(_beir(tmp_path / "a", GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS))
    packed = load_beir(_beir(tmp_path / "b", GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS, gz=True))
    changed = load_beir(_beir(tmp_path / "c", [*GOOD_CORPUS[:2], _doc("d3", "other")], GOOD_QUERIES, GOOD_QRELS))
    assert plain.corpus_hash == packed.corpus_hash != changed.corpus_hash


@pytest.mark.parametrize(
    ("corpus", "queries", "qrels", "pattern"),
    [
        ([_doc("d1"), "{not json", _doc("d3")], GOOD_QUERIES, GOOD_QRELS, r"corpus\.jsonl:2: malformed JSON"),
        ([_doc("d1"), _doc("d2"), _doc("d1")], GOOD_QUERIES, GOOD_QRELS, r"corpus\.jsonl:3: duplicate document id 'd1' \(first on line 1\)"),
        ([_doc("d1"), _doc("d2", "", "")], GOOD_QUERIES, GOOD_QRELS, r"corpus\.jsonl:2: document 'd2' has an empty title and text"),
        ([_doc("d1"), json.dumps({"title": "x", "text": "y"})], GOOD_QUERIES, GOOD_QRELS, r"corpus\.jsonl:2: missing or invalid '_id'"),
        ([_doc("d1"), json.dumps({"_id": "d2", "text": 5})], GOOD_QUERIES, GOOD_QRELS, r"corpus\.jsonl:2: 'text' of record 'd2' is int"),
        ([_doc("d1"), "[1, 2]"], GOOD_QUERIES, GOOD_QRELS, r"corpus\.jsonl:2: expected a JSON object"),
        (GOOD_CORPUS, [_q("q1"), _q("q1")], GOOD_QRELS, r"queries\.jsonl:2: duplicate query id 'q1'"),
        (GOOD_CORPUS, [_q("q1"), _q("q2", "  ")], GOOD_QRELS, r"queries\.jsonl:2: query 'q2' has empty text"),
        (GOOD_CORPUS, GOOD_QUERIES, ["q1\td1\t1", "q2\td9\t1"], r"test\.tsv:3: corpus id 'd9' is not in corpus\.jsonl"),
        (GOOD_CORPUS, GOOD_QUERIES, ["q1\td1\t1", "q7\td2\t1"], r"test\.tsv:3: query id 'q7' is not in queries\.jsonl"),
        (GOOD_CORPUS, GOOD_QUERIES, ["q1\td1\t1", "q1\td1\t2"], r"test\.tsv:3: duplicate judgement for \(q1, d1\)"),
        (GOOD_CORPUS, GOOD_QUERIES, ["q1\td1\t1", "q2 d2 1"], r"test\.tsv:3: expected 3 tab-separated columns"),
        (GOOD_CORPUS, GOOD_QUERIES, ["q1\td1\t1", "q2\td2\thigh"], r"test\.tsv:3: score 'high' is not an integer"),
    ],
)
def test_malformed_beir_is_rejected_with_file_and_line(tmp_path: Path, corpus, queries, qrels, pattern) -> None:
    with pytest.raises(DataError, match=pattern):
        load_beir(_beir(tmp_path, corpus, queries, qrels))


def test_missing_files_and_split(tmp_path: Path) -> None:
    root = _beir(tmp_path, GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS)
    with pytest.raises(DataError, match=r"no qrels for split 'train'; available splits: test"):
        load_beir(root, "train")
    (root / "queries.jsonl").unlink()
    with pytest.raises(DataError, match=r"queries\.jsonl is missing"):
        load_beir(root)
    (root / "corpus.jsonl").unlink()
    with pytest.raises(DataError, match=r"no corpus\.jsonl or corpus\.jsonl\.gz"):
        load_beir(root)
    with pytest.raises(DataError, match="does not exist"):
        load_beir(tmp_path / "nowhere")


def test_truncated_gzip_is_a_data_error(tmp_path: Path) -> None:
    root = _beir(tmp_path, GOOD_CORPUS * 1, GOOD_QUERIES, GOOD_QRELS, gz=True)
    data = (root / "corpus.jsonl.gz").read_bytes()
    (root / "corpus.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"corpus\.jsonl\.gz: cannot be read"):
        load_beir(root)


# ---------------------------------------------------------------- malformed sentence sets
def test_malformed_stsb(tmp_path: Path) -> None:
    (tmp_path / "sts-test.csv").write_text("g\tf\t2012\t1\t4.0\ta\tb\n" "g\tf\t2012\t2\t7.5\ta\tb\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"sts-test\.csv:2: score 7\.5 is outside 0\.0-5\.0"):
        load_stsb(tmp_path, "test")
    (tmp_path / "sts-test.csv").write_text("g\tf\t2012\t1\t4.0\ta\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"sts-test\.csv:1: expected at least 7 tab-separated columns"):
        load_stsb(tmp_path, "test")
    with pytest.raises(DataError, match=r"unknown STS-B split 'validation'; valid splits: train, dev, test"):
        load_stsb(tmp_path, "validation")


def test_sick_crlf_gz_and_bad_rows(tmp_path: Path) -> None:
    header = "pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tSemEval_set"
    rows = ["1\tA dog runs\tA dog is running\tENTAILMENT\t4.9\tTRAIN", "2\tx\ty\tNEUTRAL\t2.0\tTEST"]
    with gzip.open(tmp_path / "SICK.txt.gz", "wb") as fh:
        fh.write(("\r\n".join([header, *rows]) + "\r\n").encode())
    pairs = load_sick(tmp_path, "train")
    assert [(p.s1, p.s2, p.score) for p in pairs] == [("A dog runs", "A dog is running", 4.9)]
    with gzip.open(tmp_path / "SICK.txt.gz", "wb") as fh:
        fh.write(("\r\n".join([header, rows[0], "3\tx\ty\tNEUTRAL\tn/a\tTRAIN"]) + "\r\n").encode())
    with pytest.raises(DataError, match=r"SICK\.txt\.gz:3: relatedness_score 'n/a' is not a number"):
        load_sick(tmp_path, "train")


def test_malformed_trec_latin1(tmp_path: Path) -> None:
    (tmp_path / "TREC_10.label").write_bytes("LOC:city Where is caf\xe9 ?\nWHAT:x Who ?\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"TREC_10\.label:2: label 'WHAT:x' is not COARSE:fine"):
        load_trec(tmp_path, "test")
    (tmp_path / "TREC_10.label").write_bytes("LOC:city Where is caf\xe9 ?\n".encode("latin-1"))
    assert load_trec(tmp_path, "test")[0].text == "Where is café ?"


# ---------------------------------------------------------------- slicing, hashing
def test_slice_is_consistent_and_deterministic(shared_data: Path) -> None:
    ds = load_beir(shared_data / "scifact", "test")
    a = slice_dataset(ds, 20, 100, seed=3)
    b = slice_dataset(ds, 20, 100, seed=3)
    c = slice_dataset(ds, 20, 100, seed=4)
    assert a.queries == b.queries and a.corpus.keys() == b.corpus.keys() and a.corpus_hash == b.corpus_hash
    assert a.queries != c.queries
    assert len(a.queries) == 20
    judged = {d for rels in a.qrels.values() for d in rels}
    assert judged <= set(a.corpus) and len(a.corpus) == len(judged) + 100
    assert set(a.qrels) == set(a.queries)
    with pytest.raises(ConfigError):
        slice_dataset(ds, 0, 5)


def test_normalized_text_hash() -> None:
    assert normalize_text("  Hello\tWORLD \n") == "hello world"
    assert text_sha256("Hello  world") == text_sha256("hello world") != text_sha256("hello worlds")
