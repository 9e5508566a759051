"""BEIR-layout loader with validation: ``corpus.jsonl[.gz]``, ``queries.jsonl``, ``qrels/<split>.tsv``.

Every problem is a ``DataError`` naming the file and the 1-based line, what was found, and what to do.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from abharness.data.hashing import corpus_hash
from abharness.data.types import Document, RetrievalDataset
from abharness.errors import DataError

__all__ = ["load_beir", "load_corpus", "load_queries", "load_qrels", "available_splits", "corpus_file"]

EmptyDocs = Literal["error", "keep"]


def corpus_file(path: Path) -> Path:
    """The corpus file of a BEIR directory: ``corpus.jsonl`` if present, else ``corpus.jsonl.gz``."""
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (path / name).is_file():
            return path / name
    raise DataError(
        f"{path}: no corpus.jsonl or corpus.jsonl.gz found; a BEIR data directory holds corpus.jsonl[.gz], "
        "queries.jsonl and qrels/<split>.tsv (pass --data DIR pointing at such a directory)"
    )


def available_splits(path: str | Path) -> list[str]:
    """Names of the qrels splits present under ``path/qrels`` (sorted)."""
    qrels_dir = Path(path) / "qrels"
    return sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []


def _check_dir(path: Path) -> None:
    if not path.exists():
        raise DataError(f"data directory {path} does not exist; pass --data DIR pointing at a BEIR data directory")
    if not path.is_dir():
        raise DataError(f"{path} is not a directory; pass --data DIR pointing at a BEIR data directory")


def _lines(file: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) for non-blank lines; gzip handled by suffix."""
    try:
        handle = gzip.open(file, "rt", encoding="utf-8") if file.suffix == ".gz" else file.open(encoding="utf-8")
        with handle:
            for number, line in enumerate(handle, start=1):
                stripped = line.rstrip("\r\n")
                if stripped.strip():
                    yield number, stripped
    except UnicodeDecodeError as exc:
        raise DataError(f"{file}: not valid UTF-8 ({exc.reason} at byte {exc.start}); re-encode the file as UTF-8") from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"{file}: cannot be read ({exc}); check the file is complete (re-download or re-gzip it)") from exc


def _json_record(file: Path, number: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{file}:{number}: malformed JSON ({exc.msg} at column {exc.colno}); fix or remove the line") from exc
    if not isinstance(record, dict):
        raise DataError(f"{file}:{number}: expected a JSON object, got {type(record).__name__}; one object per line")
    return record


def _id(file: Path, number: int, record: dict) -> str:
    raw = record.get("_id")
    if isinstance(raw, bool) or not isinstance(raw, str | int) or str(raw).strip() == "":
        raise DataError(f"{file}:{number}: missing or invalid '_id' ({raw!r}); every record needs a non-empty string id")
    return str(raw)


def _text_field(file: Path, number: int, record: dict, key: str, *, required: bool) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise DataError(f"{file}:{number}: record {record.get('_id')!r} has no '{key}' field; add it")
        return ""
    if not isinstance(value, str):
        raise DataError(f"{file}:{number}: '{key}' of record {record.get('_id')!r} is {type(value).__name__}, expected a string")
    return value


def load_corpus(path: str | Path, *, empty_docs: EmptyDocs = "error") -> dict[str, Document]:
    """Read and validate the corpus of a BEIR directory (doc id -> ``Document``, in file order).

    Rejects malformed JSON, missing ids, duplicate ids, and documents whose title and text are both empty
    (unless ``empty_docs="keep"``: some collections, e.g. Cranfield, contain empty documents on purpose).
    """
    path = Path(path)
    _check_dir(path)
    file = corpus_file(path)
    corpus: dict[str, Document] = {}
    first_line: dict[str, int] = {}
    for number, line in _lines(file):
        record = _json_record(file, number, line)
        doc_id = _id(file, number, record)
        if doc_id in corpus:
            raise DataError(f"{file}:{number}: duplicate document id {doc_id!r} (first on line {first_line[doc_id]}); ids must be unique")
        title = _text_field(file, number, record, "title", required=False)
        text = _text_field(file, number, record, "text", required=True)
        if not title.strip() and not text.strip() and empty_docs == "error":
            raise DataError(
                f"{file}:{number}: document {doc_id!r} has an empty title and text; remove it, or keep it on purpose "
                "with empty_docs='keep' (CLI: --allow-empty-docs)"
            )
        corpus[doc_id] = Document(doc_id=doc_id, title=title.strip(), text=text.strip())
        first_line[doc_id] = number
    if not corpus:
        raise DataError(f"{file}: the corpus is empty; it needs one JSON object per line with _id, title, text")
    return corpus


def load_queries(path: str | Path) -> dict[str, str]:
    """Read and validate ``queries.jsonl`` (query id -> text); ids unique, texts non-empty."""
    path = Path(path)
    _check_dir(path)
    file = path / "queries.jsonl"
    if not file.is_file():
        raise DataError(f"{file} is missing; a BEIR data directory needs queries.jsonl (one {{'_id','text'}} per line)")
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in _lines(file):
        record = _json_record(file, number, line)
        query_id = _id(file, number, record)
        if query_id in queries:
            raise DataError(f"{file}:{number}: duplicate query id {query_id!r} (first on line {first_line[query_id]}); ids must be unique")
        text = _text_field(file, number, record, "text", required=True).strip()
        if not text:
            raise DataError(f"{file}:{number}: query {query_id!r} has empty text; remove the query or give it a text")
        queries[query_id] = text
        first_line[query_id] = number
    return queries


def load_qrels(path: str | Path, split: str) -> tuple[dict[str, dict[str, int]], dict[tuple[str, str], int]]:
    """Read ``qrels/<split>.tsv`` (optional header ``query-id corpus-id score``; graded integer scores).

    Returns (qrels, line of each (query id, doc id) pair) so callers can point at the line of a bad id.
    """
    path = Path(path)
    file = path / "qrels" / f"{split}.tsv"
    if not file.is_file():
        splits = available_splits(path)
        raise DataError(
            f"{file} is missing: no qrels for split {split!r}; available splits: {', '.join(splits) or 'none'} "
            "(choose one with --split)"
        )
    qrels: dict[str, dict[str, int]] = {}
    lines: dict[tuple[str, str], int] = {}
    for number, line in _lines(file):
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataError(
                f"{file}:{number}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(fields)}: {line[:80]!r}"
            )
        query_id, doc_id, raw_score = (f.strip() for f in fields)
        try:
            score = int(raw_score)
        except ValueError:
            if number == 1 and not lines:
                continue  # header row
            raise DataError(f"{file}:{number}: score {raw_score!r} is not an integer; qrels scores are graded integers") from None
        if not query_id or not doc_id:
            raise DataError(f"{file}:{number}: empty query id or corpus id; fix the row")
        if (query_id, doc_id) in lines:
            raise DataError(
                f"{file}:{number}: duplicate judgement for ({query_id}, {doc_id}) (first on line {lines[query_id, doc_id]}); keep one row"
            )
        qrels.setdefault(query_id, {})[doc_id] = score
        lines[query_id, doc_id] = number
    if not qrels:
        raise DataError(f"{file}: no judgements found; add rows 'query-id<TAB>corpus-id<TAB>score'")
    return qrels, lines


def load_beir(path: str | Path, split: str = "test", *, empty_docs: EmptyDocs = "error") -> RetrievalDataset:
    """Load and validate a BEIR-layout data set with the qrels of ``split``.

    Checks: files present, JSON/TSV well formed, ids unique, texts non-empty, and every qrels id present in the
    corpus and the queries. ``queries`` of the result holds only the queries judged in ``split``.
    Raises ``DataError`` naming the file and line.
    """
    path = Path(path)
    _check_dir(path)
    corpus = load_corpus(path, empty_docs=empty_docs)
    queries = load_queries(path)
    qrels, lines = load_qrels(path, split)
    qrels_file = path / "qrels" / f"{split}.tsv"
    for (query_id, doc_id), number in lines.items():
        if query_id not in queries:
            raise DataError(
                f"{qrels_file}:{number}: query id {query_id!r} is not in queries.jsonl; fix the id or add the query"
            )
        if doc_id not in corpus:
            raise DataError(
                f"{qrels_file}:{number}: corpus id {doc_id!r} is not in {corpus_file(path).name}; fix the id or add the document"
            )
    empty = [doc_id for doc_id, doc in corpus.items() if not doc.full_text.strip()]
    return RetrievalDataset(
        name=path.name,
        path=str(path),
        split=split,
        corpus=corpus,
        queries={qid: queries[qid] for qid in qrels},
        qrels=qrels,
        corpus_hash=corpus_hash(corpus),
        meta={"corpus_file": corpus_file(path).name, "empty_docs": ",".join(empty)},
    )
