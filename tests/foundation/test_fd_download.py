"""resolve_data against a BEIR-style zip served on loopback (port 0), checksum and offline failures."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from abharness.data import DataSource, load_beir, resolve_data
from abharness.errors import DataError


def _make_zip(root: Path) -> Path:
    """A miniature BEIR zip (tiny corpus, real layout with a top-level folder), like the public ones."""
    archive = root / "tiny.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("tiny/corpus.jsonl", '{"_id": "d1", "title": "T", "text": "aspirin and the heart"}\n'
                    '{"_id": "d2", "title": "", "text": "mice and genes"}\n')
        zf.writestr("tiny/queries.jsonl", '{"_id": "q1", "text": "does aspirin help the heart?"}\n')
        zf.writestr("tiny/qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return archive


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    www = tmp_path / "www"
    www.mkdir()
    archive = _make_zip(www)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tiny.zip", archive
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_download_verify_extract_and_reuse(served, tmp_path: Path) -> None:
    url, archive = served
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    sources = {"tiny": DataSource(url, sha256=sha)}
    path = resolve_data("tiny", cache_dir=tmp_path / "cache", sources=sources, progress=False)
    assert path == tmp_path / "cache" / "tiny"
    ds = load_beir(path, "test")
    assert ds.qrels == {"q1": {"d1": 1}}
    # second call: served from the cache, no network needed
    offline = {"tiny": DataSource("http://127.0.0.1:9/never.zip", sha256=sha)}
    assert resolve_data("tiny", cache_dir=tmp_path / "cache", sources=offline, progress=False) == path


def test_md5_sources_are_verified_too(served, tmp_path: Path) -> None:
    url, archive = served
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    path = resolve_data("tiny", cache_dir=tmp_path / "c", sources={"tiny": DataSource(url, md5=md5)}, progress=False)
    assert (path / "corpus.jsonl").is_file()


def test_checksum_mismatch_is_refused_and_nothing_cached(served, tmp_path: Path) -> None:
    url, _ = served
    sources = {"tiny": DataSource(url, sha256="0" * 64)}
    with pytest.raises(DataError, match=r"checksum mismatch for 'tiny'.*pass --data /path/to/tiny"):
        resolve_data("tiny", cache_dir=tmp_path / "cache", sources=sources, progress=False)
    assert not (tmp_path / "cache" / "tiny").exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_failure_says_how_to_use_data(tmp_path: Path) -> None:
    sources = {"tiny": DataSource(f"http://127.0.0.1:{_closed_port()}/tiny.zip", sha256="0" * 64)}
    with pytest.raises(DataError, match=r"cannot download 'tiny'.*offline\?.*pass --data /path/to/tiny"):
        resolve_data("tiny", cache_dir=tmp_path, sources=sources, progress=False, timeout_s=5)


def test_local_dirs_and_unknown_names(tmp_path: Path, shared_data: Path) -> None:
    assert resolve_data(shared_data / "scifact") == shared_data / "scifact"
    with pytest.raises(DataError, match=r"'no-such-set' is neither a data directory nor a known data set name \(.*scifact"):
        resolve_data("no-such-set", cache_dir=tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="neither a data directory"):
        resolve_data(tmp_path / "file.txt", cache_dir=tmp_path)


def test_unsafe_zip_member_is_refused(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    with zipfile.ZipFile(www / "evil.zip", "w") as zf:
        zf.writestr("../escape/corpus.jsonl", "{}\n")
    sha = hashlib.sha256((www / "evil.zip").read_bytes()).hexdigest()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/evil.zip"
        with pytest.raises(DataError, match="unsafe member path"):
            resolve_data("evil", cache_dir=tmp_path / "c", sources={"evil": DataSource(url, sha256=sha)}, progress=False)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert not (tmp_path / "escape").exists()
