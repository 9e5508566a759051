"""Conversions from public source files into the layout of ``../shared/data`` (pure: bytes in, bytes out).

Cranfield and CISI are published in the SMART format (``.I`` record id, then ``.T`` title, ``.A`` authors, ``.B``
bibliography, ``.W`` text, ``.X`` citations); there is no public copy in BEIR layout, so the downloader fetches the
originals and converts them here, reproducing ``../shared/data/{cranfield,cisi}`` byte for byte (the manifest's
sha256 of each output file is checked after conversion). The rules are the ones each ``SOURCE.md`` states:

* documents: ``_id`` = ``.I``, ``title`` = ``.T``, ``text`` = ``.W``, whitespace collapsed to single spaces,
  ``.A``/``.B``/``.X`` dropped, ``metadata`` ``{}``;
* Cranfield queries: ``_id`` = position 1..225 in ``cran.qry`` (``cranqrel`` numbers them so, while the ``.I``
  labels run 001..365 with gaps); qrels score = 5 - Cleverdon code (4 = complete answer ... 1 = minimum
  interest), rows with code -1 dropped;
* CISI queries: ``text`` = ``.T + " " + .W`` when the query has a title, else ``.W``; only judged queries kept;
  every ``CISI.REL`` pair scores 1;
* split: the judged query ids sorted as integers; 0-based position ``i`` goes to test when ``i % 3 == 2``.

``gzip_bytes`` writes the gzip member exactly as the shared files were written (zlib level 9, mtime 0, file name
in the header), so on zlib 1.2.x the bytes are identical; the content digest is checked as well, for zlib builds
whose deflate output differs.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping

from abharness.errors import DataError

__all__ = ["parse_smart", "cranfield", "cisi", "gzip_bytes", "crlf_to_lf", "TRANSFORMS", "DATASET_CONVERTERS"]

_FIELDS = {".T": "title", ".A": "authors", ".B": "bib", ".W": "text", ".X": "links", ".K": "keywords"}


def _collapse(text: str) -> str:
    return " ".join(text.split())


def parse_smart(text: str, *, source: str = "SMART file") -> list[dict[str, str]]:
    """Records of a SMART-format file in file order: ``{"id": ..., "title": ..., "text": ..., ...}``, each field's
    lines joined with newlines (not yet collapsed). Raises ``DataError`` on text before the first ``.I``."""
    records: list[dict[str, str]] = []
    field: str | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        tag = line[:2]
        if line.startswith(".I ") or line.strip() == ".I":
            records.append({"id": line[2:].strip()})
            field = None
        elif tag in _FIELDS and line[2:].strip() == "":
            if not records:
                raise DataError(f"{source}:{lineno}: field {tag} before the first .I record")
            field = _FIELDS[tag]
            records[-1].setdefault(field, "")
        elif field is not None:
            records[-1][field] += line + "\n"
        elif line.strip():
            raise DataError(f"{source}:{lineno}: text outside a field: {line[:60]!r}")
    return records


def _jsonl(rows: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8")


def _split_qrels(qrels: list[tuple[int, int, int]]) -> dict[str, bytes]:
    judged = sorted({q for q, _, _ in qrels})
    test = {q for i, q in enumerate(judged) if i % 3 == 2}
    out = {"train": ["query-id\tcorpus-id\tscore"], "test": ["query-id\tcorpus-id\tscore"]}
    for q, d, score in sorted(qrels):
        out["test" if q in test else "train"].append(f"{q}\t{d}\t{score}")
    return {f"qrels/{name}.tsv": ("\n".join(lines) + "\n").encode("utf-8") for name, lines in out.items()}


def _docs(records: list[dict[str, str]]) -> bytes:
    return _jsonl([
        {"_id": r["id"], "title": _collapse(r.get("title", "")), "text": _collapse(r.get("text", "")), "metadata": {}}
        for r in records
    ])


def _decode(files: Mapping[str, bytes], name: str) -> str:
    try:
        return files[name].decode("utf-8")
    except KeyError:
        raise DataError(f"conversion needs {name!r}, which was not downloaded") from None
    except UnicodeDecodeError:
        return files[name].decode("latin-1")


def cranfield(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """``cran.all.1400``, ``cran.qry``, ``cranqrel`` -> ``corpus.jsonl``, ``queries.jsonl``, ``qrels/{train,test}.tsv``."""
    docs = parse_smart(_decode(files, "cran.all.1400"), source="cran.all.1400")
    queries = parse_smart(_decode(files, "cran.qry"), source="cran.qry")
    qrels: list[tuple[int, int, int]] = []
    for lineno, line in enumerate(_decode(files, "cranqrel").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise DataError(f"cranqrel:{lineno}: expected 'query doc code', got {line!r}")
        q, d, code = (int(p) for p in parts)
        if code != -1:
            qrels.append((q, d, 5 - code))
    out = {
        "corpus.jsonl": _docs(docs),
        "queries.jsonl": _jsonl([{"_id": str(i), "text": _collapse(r.get("text", "")), "metadata": {}}
                                 for i, r in enumerate(queries, 1)]),
    }
    return out | _split_qrels(qrels)


def cisi(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """``CISI.ALL``, ``CISI.QRY``, ``CISI.REL`` -> ``corpus.jsonl``, ``queries.jsonl``, ``qrels/{train,test}.tsv``."""
    docs = parse_smart(_decode(files, "CISI.ALL"), source="CISI.ALL")
    queries = parse_smart(_decode(files, "CISI.QRY"), source="CISI.QRY")
    pairs: set[tuple[int, int]] = set()
    for lineno, line in enumerate(_decode(files, "CISI.REL").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataError(f"CISI.REL:{lineno}: expected 'query doc ...', got {line!r}")
        pairs.add((int(parts[0]), int(parts[1])))
    judged = {q for q, _ in pairs}
    rows: list[dict[str, object]] = []
    for r in queries:
        if int(r["id"]) not in judged:
            continue
        text = _collapse(r.get("text", ""))
        title = _collapse(r.get("title", ""))
        rows.append({"_id": str(int(r["id"])), "text": f"{title} {text}" if title else text, "metadata": {}})
    out = {"corpus.jsonl": _docs(docs), "queries.jsonl": _jsonl(rows)}
    return out | _split_qrels([(q, d, 1) for q, d in pairs])


def gzip_bytes(data: bytes, *, filename: str | None = None, mem_level: int = 8, os_byte: int = 255) -> bytes:
    """A gzip member of ``data``: zlib level 9, mtime 0, optional file name in the header (RFC 1952)."""
    flags = 0x08 if filename else 0
    header = b"\x1f\x8b\x08" + bytes([flags]) + struct.pack("<I", 0) + bytes([2, os_byte])
    if filename:
        header += filename.encode("latin-1") + b"\x00"
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS, mem_level)
    body = compressor.compress(data) + compressor.flush()
    return header + body + struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)


def crlf_to_lf(data: bytes) -> bytes:
    """CRLF line endings to LF (STS-B's ``sts-train.csv`` as published has CRLF)."""
    return data.replace(b"\r\n", b"\n")


# Per-file transforms named in the manifest ("gzip:<header name>" writes that name into the gzip header; the
# shared corpus files carry "corpus.jsonl", SICK.txt.gz carries none and was written by GNU gzip -9n).
TRANSFORMS = {
    "copy": lambda data: data,
    "crlf_to_lf": crlf_to_lf,
    "gzip:corpus.jsonl": lambda data: gzip_bytes(data, filename="corpus.jsonl"),
    "gzip-n": lambda data: gzip_bytes(data, mem_level=9, os_byte=3),
}

# Whole-set conversions: downloaded files by name -> layout files by relative path (before per-file gzip).
DATASET_CONVERTERS = {"cranfield": cranfield, "cisi": cisi}
