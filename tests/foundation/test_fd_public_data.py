"""Public data fetching (``abharness.data.public``) against a loopback server holding copies of ../shared/data.

The server (127.0.0.1, port 0, started here) answers under the same URL paths as the public hosts, with the
artefacts rebuilt from the shared files: unchanged files as they are, ``sts-train.csv`` with its CRLF restored,
gzip files decompressed. Cranfield and CISI are published only in the SMART format, so their originals are
re-created from the shared files (a SMART rendering of the same records, with the dropped fields and judgements
added back); their manifest source checksums are swapped for the re-created bytes, while every output file is
still checked against the real sha256 of ../shared/data. Nothing here reaches the internet.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import http.server
import json
import socket
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import abharness.data.public as public
from abharness.data import load_beir, load_sick, load_stsb, load_trec
from abharness.data.convert import parse_smart
from abharness.errors import DataError

_INVERSE: dict[str, Callable[[bytes], bytes]] = {
    "copy": lambda b: b,
    "crlf_to_lf": lambda b: b.replace(b"\n", b"\r\n"),
    "gzip:corpus.jsonl": gzip.decompress,
    "gzip-n": gzip.decompress,
}


def _records(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _qrels(folder: Path) -> list[tuple[int, int, int]]:
    rows = []
    for split in ("train", "test"):
        for line in (folder / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]:
            q, d, s = line.split("\t")
            rows.append((int(q), int(d), int(s)))
    return sorted(rows, key=lambda r: (r[1] * 7 + r[0]) % 11)  # not in sorted order: the converter sorts


def _wrapped(text: str) -> str:
    return "\n".join(textwrap.wrap(text, 60, break_long_words=False, break_on_hyphens=False)) if text else ""


def _smart_cranfield(folder: Path) -> dict[str, bytes]:
    docs = "".join(
        f".I {d['_id']}\n.T\n{_wrapped(d['title'])}\n.A\nsomeone,a.\n.B\nj. ae. scs. 1958\n.W\n{_wrapped(d['text'])}\n"
        .replace("\n\n", "\n")
        for d in _records(folder / "corpus.jsonl.gz")
    )
    queries = "".join(f".I {i * 3:03d}\n.W\n  {_wrapped(q['text'])}\n" for i, q in enumerate(_records(folder / "queries.jsonl"), 1))
    qrels = "".join(f"{q} {d} {5 - s} \n" for q, d, s in _qrels(folder))
    qrels += "".join(f"{q} {q + 1} -1\n" for q in range(1, 226))  # the code -1 rows the conversion drops
    return {"cran.all.1400": docs.encode(), "cran.qry": queries.encode(), "cranqrel": qrels.encode()}


def _smart_cisi(folder: Path) -> dict[str, bytes]:
    docs = "".join(
        f".I {d['_id']}\n.T\n{_wrapped(d['title'])}\n.A\nDoe, J.\n.W\n   {_wrapped(d['text'])}\n.X\n1\t5\t1\n"
        for d in _records(folder / "corpus.jsonl.gz")
    )
    queries = "".join(f".I {q['_id']}\n.W\n{_wrapped(q['text'])}\n" for q in _records(folder / "queries.jsonl"))
    queries += ".I 999\n.W\nan unjudged query the conversion leaves out\n"
    rel = "".join(f"{q:6d}{d:7d}\t0\t0.000000\n" for q, d, _ in _qrels(folder))
    return {"CISI.ALL": docs.encode(), "CISI.QRY": queries.encode(), "CISI.REL": rel.encode()}


_RECREATE = {"cranfield": _smart_cranfield, "cisi": _smart_cisi}


@pytest.fixture(scope="module")
def mirror(shared_data: Path) -> tuple[dict[str, bytes], dict]:
    """(URL path -> bytes served, the manifest with Cranfield/CISI source checksums of the re-created originals)."""
    manifest = copy.deepcopy(public.public_manifest())
    served: dict[str, bytes] = {}
    for name, entry in manifest.items():
        folder = shared_data / name
        if entry.get("convert"):
            raw = _RECREATE[entry["convert"]](folder)
            for source in entry["sources"]:
                source["sha256"] = hashlib.sha256(raw[source["name"]]).hexdigest()
                source["size"] = len(raw[source["name"]])
        else:
            raw = {spec["from"]: _INVERSE[spec["transform"]]((folder / rel).read_bytes())
                   for rel, spec in entry["files"].items()}
            for source in entry["sources"]:  # the shared files ARE the public copies: same sha256 as published
                assert hashlib.sha256(raw[source["name"]]).hexdigest() == source["sha256"], (name, source["name"])
        for source in entry["sources"]:
            served[urlsplit(source["url"]).path] = raw[source["name"]]
    return served, manifest


class _Server:
    """A loopback HTTP server over a dict of paths; ``truncate``/``corrupt`` name paths to damage."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.truncate: set[str] = set()
        self.corrupt: set[str] = set()
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                if self.path in outer.corrupt:
                    body = body[:-1] + bytes([body[-1] ^ 1])
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in outer.truncate else body)
                if self.path in outer.truncate:
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(mirror, monkeypatch) -> Iterator[_Server]:
    served, manifest = mirror
    monkeypatch.setattr(public, "public_manifest", lambda: manifest)
    monkeypatch.delenv("ABHARNESS_DATA", raising=False)
    with _Server(served) as srv:
        monkeypatch.setenv("ABHARNESS_DATA_BASE_URL", srv.url)
        yield srv


def test_fetch_all_reproduces_the_shared_layout_byte_for_byte(server, shared_data: Path, tmp_path: Path) -> None:
    cache = tmp_path / "data"
    root = public.find_data_root(None, public.DEMO_DATASETS, cache_dir=cache, shared=tmp_path / "absent", progress=False)
    assert root == cache
    for name, entry in public.public_manifest().items():
        assert sorted(p.name for p in (cache / name).iterdir() if p.is_file()) == sorted(
            [Path(rel).name for rel in entry["files"] if "/" not in rel] + ["SOURCE.md", ".abharness-complete"]
        )
        for rel in entry["files"]:
            ours, theirs = (cache / name / rel).read_bytes(), (shared_data / name / rel).read_bytes()
            if rel.endswith(".gz"):  # the same bytes with zlib 1.2.x; the same content in any case
                assert gzip.decompress(ours) == gzip.decompress(theirs), (name, rel)
            else:
                assert ours == theirs, (name, rel)
    assert len(load_beir(cache / "scifact", "test").queries) == 300
    assert len(load_beir(cache / "cranfield", "train", empty_docs="keep").queries) == 150
    assert len(load_beir(cache / "cisi", "test").queries) == 25
    assert len(load_stsb(cache / "stsbenchmark", "train")) == 5749
    assert len(load_sick(cache / "sick", "test")) == 4906
    assert len(load_trec(cache / "trec_qc", "test")) == 500
    # reused from the cache afterwards: no request reaches the server
    before = len(server.requests)
    assert public.find_data_root(None, cache_dir=cache, shared=tmp_path / "absent", progress=False) == cache
    assert public.fetch_public("sick", cache_dir=cache, progress=False) == cache / "sick"
    assert len(server.requests) == before


def test_shared_data_wins_over_cache_and_explicit_data_wins_over_both(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ABHARNESS_DATA", raising=False)
    assert public.find_data_root(None, shared=shared_data, cache_dir=tmp_path) == shared_data
    assert public.find_data_root(tmp_path, shared=shared_data) == tmp_path
    with pytest.raises(DataError, match=r"--data-root .*nope: no such directory"):
        public.find_data_root(tmp_path / "nope")


def test_checksum_mismatch_is_refused_and_nothing_cached(server, tmp_path: Path) -> None:
    path = next(p for p in server.files if p.endswith("scifact/qrels/test.tsv"))
    server.corrupt.add(path)
    with pytest.raises(DataError, match=r"checksum mismatch for scifact/test\.tsv from http://127\.0\.0\.1.*nothing was cached"):
        public.fetch_public("scifact", cache_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []  # no partial folder, no temporary left behind


def test_truncated_download_is_named_and_nothing_cached(server, tmp_path: Path) -> None:
    path = next(p for p in server.files if p.endswith("TREC_10.label"))
    server.truncate.add(path)
    with pytest.raises(DataError, match=r"download of trec_qc/TREC_10\.label .* was truncated \(\d+ of 23269 bytes\)"):
        public.fetch_public("trec_qc", cache_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_transform_that_no_longer_reproduces_the_shared_file_is_refused(server, mirror, tmp_path, monkeypatch) -> None:
    manifest = copy.deepcopy(mirror[1])
    manifest["stsbenchmark"]["files"]["sts-train.csv"]["transform"] = "copy"  # keeps the CRLF: not the shared bytes
    monkeypatch.setattr(public, "public_manifest", lambda: manifest)
    with pytest.raises(DataError, match=r"stsbenchmark/sts-train\.csv: built file does not match"):
        public.fetch_public("stsbenchmark", cache_dir=tmp_path, progress=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_MAIN = "import sys; from abharness.cli.main import main; main(sys.argv[1:])"


def test_offline_without_data_is_one_line_naming_what_to_fetch_and_where(tmp_path: Path) -> None:
    """``abharness demo`` in a fresh folder (no ../shared/data, empty cache, no network): one line, exit 2."""
    import os
    import subprocess
    import sys

    import abharness

    env = {k: v for k, v in os.environ.items() if k != "ABHARNESS_DATA"}
    env |= {"ABHARNESS_CACHE": str(tmp_path / "cache"), "ABHARNESS_DATA_BASE_URL": f"http://127.0.0.1:{_closed_port()}",
            "PYTHONPATH": str(Path(abharness.__file__).parents[1]), "COLUMNS": "400"}
    result = subprocess.run([sys.executable, "-c", _MAIN, "demo", "--out", "out"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, lines
    assert "cannot download scifact/corpus.jsonl" in lines[0] and "offline?" in lines[0]
    assert "abharness data fetch scifact cranfield cisi stsbenchmark sick trec_qc" in lines[0]
    assert str(tmp_path / "cache" / "data") in lines[0]
    assert not (tmp_path / "cache" / "data" / "scifact").exists()


def test_manifest_records_the_shared_files(shared_data: Path) -> None:
    """The packaged sha256s are those of ../shared/data (catches a drifted manifest or a changed shared copy)."""
    for name, entry in public.public_manifest().items():
        for rel, spec in entry["files"].items():
            data = (shared_data / name / rel).read_bytes()
            assert hashlib.sha256(data).hexdigest() == spec["sha256"] and len(data) == spec["size"], (name, rel)
            if rel.endswith(".gz"):
                assert hashlib.sha256(gzip.decompress(data)).hexdigest() == spec["content_sha256"]
        for source in entry["sources"]:
            assert source["url"].startswith(("https://raw.githubusercontent.com/", "https://media.githubusercontent.com/"))
            assert len(source["sha256"]) == 64


def test_smart_parser_keeps_fields_and_rejects_stray_text() -> None:
    records = parse_smart(".I 1\n.T\nA title\n.A\nX, Y.\n.W\n  some\ntext .\n.I 2\n.W\nonly text\n")
    assert records == [{"id": "1", "title": "A title\n", "authors": "X, Y.\n", "text": "  some\ntext .\n"},
                       {"id": "2", "text": "only text\n"}]
    with pytest.raises(DataError, match=r"x\.txt:1: text outside a field"):
        parse_smart("stray\n.I 1\n", source="x.txt")
