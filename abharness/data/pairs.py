"""Loaders for the sentence-level sets in ../shared/data: STS-B, SICK and TREC question classification.

Each accepts the directory as laid out there (or the file itself) and raises ``DataError`` naming file and line.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from abharness.data.types import LabelledText, SentencePair
from abharness.errors import DataError

__all__ = ["load_stsb", "load_sick", "load_trec", "STSB_SPLITS", "SICK_SPLITS", "TREC_SPLITS", "TREC_COARSE"]

STSB_SPLITS = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}
SICK_SPLITS = {"train": "TRAIN", "trial": "TRIAL", "dev": "TRIAL", "test": "TEST"}
TREC_SPLITS = {"train": "train_5500.label", "test": "TREC_10.label"}
TREC_COARSE = frozenset({"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"})


def _split_name(split: str, table: dict[str, str], what: str) -> str:
    key = split.strip().lower()
    if key not in table:
        raise DataError(f"unknown {what} split {split!r}; valid splits: {', '.join(table)}")
    return key


def _resolve(path: str | Path, filename: str, what: str) -> Path:
    path = Path(path)
    file = path / filename if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"{file} is missing; pass --data pointing at the {what} directory (it holds {filename})")
    return file


def _read_lines(file: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(1-based number, line) with any CR/LF ending removed; blank lines skipped; gzip by suffix."""
    try:
        opener = gzip.open(file, "rt", encoding=encoding, newline="") if file.suffix == ".gz" else file.open(
            encoding=encoding, newline=""
        )
        with opener as handle:
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield number, line
    except UnicodeDecodeError as exc:
        raise DataError(f"{file}: not valid {encoding} ({exc.reason} at byte {exc.start}); check the file's encoding") from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"{file}: cannot be read ({exc}); check the file is complete") from exc


def _score(file: Path, number: int, raw: str, low: float, high: float, what: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise DataError(f"{file}:{number}: {what} {raw!r} is not a number (expected {low}-{high})") from None
    if not low <= value <= high:
        raise DataError(f"{file}:{number}: {what} {value} is outside {low}-{high}; fix the row")
    return value


def load_stsb(path: str | Path, split: str = "test") -> list[SentencePair]:
    """STS Benchmark pairs with gold similarity 0-5.

    Format: UTF-8, tab-separated, no header: ``genre file year id score sentence1 sentence2 [extra columns]``.
    Extra trailing columns (source/license notes on some lines) are ignored; no CSV quoting (sentences contain ``"``).
    """
    key = _split_name(split, STSB_SPLITS, "STS-B")
    file = _resolve(path, STSB_SPLITS[key], "stsbenchmark")
    pairs: list[SentencePair] = []
    for number, line in _read_lines(file, "utf-8"):
        fields = line.split("\t")
        if len(fields) < 7:
            raise DataError(
                f"{file}:{number}: expected at least 7 tab-separated columns (genre, file, year, id, score, "
                f"sentence1, sentence2), got {len(fields)}"
            )
        score = _score(file, number, fields[4], 0.0, 5.0, "score")
        s1, s2 = fields[5].strip(), fields[6].strip()
        if not s1 or not s2:
            raise DataError(f"{file}:{number}: empty sentence; both sentence columns must have text")
        pairs.append(SentencePair(s1=s1, s2=s2, score=score, split=key))
    if not pairs:
        raise DataError(f"{file}: no pairs found")
    return pairs


_SICK_HEADER = ("pair_ID", "sentence_A", "sentence_B", "entailment_label", "relatedness_score")


def load_sick(path: str | Path, split: str = "test") -> list[SentencePair]:
    """SICK pairs with relatedness 1-5 (SICK-R) for one SemEval split: train, trial (alias dev) or test.

    Reads ``SICK.txt`` or ``SICK.txt.gz`` (tab-separated, header row, CRLF line endings).
    """
    key = _split_name(split, SICK_SPLITS, "SICK")
    path = Path(path)
    if path.is_dir():
        candidates = [path / "SICK.txt", path / "SICK.txt.gz"]
        file = next((c for c in candidates if c.is_file()), candidates[-1])
    else:
        file = path
    if not file.is_file():
        raise DataError(f"{file} is missing; pass --data pointing at the sick directory (it holds SICK.txt.gz)")
    wanted = SICK_SPLITS[key]
    pairs: list[SentencePair] = []
    columns: dict[str, int] = {}
    for number, line in _read_lines(file, "utf-8"):
        fields = line.split("\t")
        if not columns:
            if tuple(fields[: len(_SICK_HEADER)]) != _SICK_HEADER or "SemEval_set" not in fields:
                raise DataError(
                    f"{file}:{number}: expected a header starting with {' '.join(_SICK_HEADER)} and a SemEval_set "
                    "column; is this the original SICK.txt?"
                )
            columns = {name: i for i, name in enumerate(fields)}
            continue
        if len(fields) != len(columns):
            raise DataError(f"{file}:{number}: expected {len(columns)} tab-separated columns, got {len(fields)}")
        if fields[columns["SemEval_set"]].strip() != wanted:
            continue
        score = _score(file, number, fields[columns["relatedness_score"]], 1.0, 5.0, "relatedness_score")
        s1, s2 = fields[columns["sentence_A"]].strip(), fields[columns["sentence_B"]].strip()
        if not s1 or not s2:
            raise DataError(f"{file}:{number}: empty sentence; both sentence columns must have text")
        pairs.append(SentencePair(s1=s1, s2=s2, score=score, split=key))
    if not columns:
        raise DataError(f"{file}: empty file; expected the SICK header and rows")
    if not pairs:
        raise DataError(f"{file}: no rows with SemEval_set {wanted}")
    return pairs


def load_trec(path: str | Path, split: str = "test") -> list[LabelledText]:
    """TREC question classification (Li & Roth 2002): ``COARSE:fine question text`` per line, ISO-8859-1.

    ``coarse`` is one of ABBR, DESC, ENTY, HUM, LOC, NUM; ``fine`` is the full label (``"LOC:city"``), because fine
    names such as ``other`` recur under several coarse labels and only the pair identifies one of the 50 classes.
    """
    key = _split_name(split, TREC_SPLITS, "TREC")
    file = _resolve(path, TREC_SPLITS[key], "trec_qc")
    items: list[LabelledText] = []
    for number, line in _read_lines(file, "latin-1"):
        label, _, text = line.partition(" ")
        coarse, colon, fine = label.partition(":")
        if not colon or not fine or coarse not in TREC_COARSE:
            raise DataError(
                f"{file}:{number}: label {label!r} is not COARSE:fine with COARSE in {', '.join(sorted(TREC_COARSE))}"
            )
        if not text.strip():
            raise DataError(f"{file}:{number}: question text is empty after label {label!r}")
        items.append(LabelledText(text=text.strip(), coarse=coarse, fine=label))
    if not items:
        raise DataError(f"{file}: no questions found")
    return items
