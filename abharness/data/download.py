"""Where data comes from: a local directory (``--data DIR``), or a checksum-verified download of a public BEIR zip
into the user cache directory. Offline, the download fails with a message saying how to point ``--data`` at a copy.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from abharness.errors import DataError

__all__ = ["DataSource", "BEIR_SOURCES", "resolve_data", "cache_root", "download_file", "effective_url", "file_sha256"]

_BEIR_BASE = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"


@dataclass(frozen=True, slots=True)
class DataSource:
    """A downloadable zip and its published checksum (sha256 preferred; BEIR itself publishes MD5 only)."""

    url: str
    sha256: str | None = None
    md5: str | None = None
    size_bytes: int | None = None


# MD5 digests as published in the BEIR README table and in ir_datasets' etc/downloads.json (the upstream host
# publishes no sha256). Small collections only; the large ones are better fetched deliberately.
BEIR_SOURCES: Mapping[str, DataSource] = {
    "scifact": DataSource(f"{_BEIR_BASE}/scifact.zip", md5="5f7d1de60b170fc8027bb7898e2efca1", size_bytes=2816079),
    "nfcorpus": DataSource(f"{_BEIR_BASE}/nfcorpus.zip", md5="a89dba18a62ef92f7d323ec890a0d38d", size_bytes=2448432),
    "arguana": DataSource(f"{_BEIR_BASE}/arguana.zip", md5="8ad3e3c2a5867cdced806d6503f29b99", size_bytes=3773617),
    "fiqa": DataSource(f"{_BEIR_BASE}/fiqa.zip", md5="17918ed23cd04fb15047f73e6c3bd9d9", size_bytes=17948027),
    "quora": DataSource(f"{_BEIR_BASE}/quora.zip", md5="18fb154900ba42a600f84b839c173167", size_bytes=15853968),
    "trec-covid": DataSource(f"{_BEIR_BASE}/trec-covid.zip", md5="ce62140cb23feb9becf6270d0d1fe6d1", size_bytes=73876720),
    "scidocs": DataSource(f"{_BEIR_BASE}/scidocs.zip", md5="38121350fc3a4d2f48850f6aff52e4a9", size_bytes=142471588),
}

_COMPLETE = ".abharness-complete"


def cache_root() -> Path:
    """abharness's cache root: ``$ABHARNESS_CACHE`` if set, else the platform user cache dir / "abharness"."""
    override = os.environ.get("ABHARNESS_CACHE")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("abharness"))


def _offline_hint(name: str, source: DataSource) -> str:
    return (
        f"download {source.url} on a machine with network, unzip it, and pass --data /path/to/{name} "
        "(the folder holding corpus.jsonl, queries.jsonl and qrels/)"
    )


BASE_URL_ENV = "ABHARNESS_DATA_BASE_URL"


def effective_url(url: str, base_url: str | None = None) -> str:
    """``url`` with its scheme and host replaced by ``base_url`` (or ``$ABHARNESS_DATA_BASE_URL``), path kept: a
    mirror, or the loopback server of the tests, serves the same paths as the public hosts."""
    base = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or None
    if not base:
        return url
    parts = urllib.parse.urlsplit(url)
    return base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def download_file(
    url: str, target: Path, *, label: str, hint: str, size_bytes: int | None = None, timeout_s: float = 60.0,
    progress: bool = True,
) -> None:
    """Stream ``url`` into ``target`` with a progress bar. Raises ``DataError`` (cause, then ``hint``) when the
    host cannot be reached or the body ends before its announced length (a truncated download)."""
    received = 0
    total: int | None = None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, target.open("wb") as out:  # noqa: S310
            announced = response.headers.get("Content-Length")
            total = int(announced) if announced else None
            with Progress(
                TextColumn(f"downloading {label}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                disable=not progress, transient=True,
            ) as bar:
                task = bar.add_task("download", total=total or size_bytes)
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    received += len(chunk)
                    bar.advance(task, len(chunk))
    except http.client.IncompleteRead as exc:
        raise DataError(
            f"download of {label} from {url} was truncated ({received + len(exc.partial)} of {total} bytes); "
            f"retry, or {hint}"
        ) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"cannot download {label} from {url} ({reason}); offline? {hint}") from None
    expected = total if total is not None else size_bytes
    if expected is not None and received < expected:
        raise DataError(f"download of {label} from {url} was truncated ({received} of {expected} bytes); retry, or {hint}")


def _download(name: str, source: DataSource, target: Path, *, timeout_s: float, progress: bool) -> None:
    download_file(effective_url(source.url), target, label=repr(name), hint=_offline_hint(name, source),
                  size_bytes=source.size_bytes, timeout_s=timeout_s, progress=progress)


def file_sha256(file: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with file.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(name: str, source: DataSource, file: Path) -> str:
    algorithm, expected = ("sha256", source.sha256) if source.sha256 else ("md5", source.md5)
    if not expected:
        raise DataError(f"no checksum recorded for {name!r}; refusing an unverified download. {_offline_hint(name, source)}")
    digest = file_sha256(file, algorithm)
    if digest != expected.lower():
        raise DataError(
            f"checksum mismatch for {name!r} from {source.url}: {algorithm} {digest} != expected {expected}; "
            f"the file is corrupt or changed upstream. {_offline_hint(name, source)}"
        )
    return f"{algorithm}:{expected.lower()}"


def _extract(name: str, archive: Path, into: Path) -> Path:
    """Unzip safely (no member may escape ``into``) and return the folder that holds the corpus."""
    try:
        with zipfile.ZipFile(archive) as zf:
            root = into.resolve()
            for member in zf.namelist():
                if not (root / member).resolve().is_relative_to(root):
                    raise DataError(f"zip for {name!r} has an unsafe member path {member!r}; refusing to extract")
            zf.extractall(into)
    except zipfile.BadZipFile as exc:
        raise DataError(f"download for {name!r} is not a valid zip ({exc})") from exc
    found = sorted(p.parent for p in into.rglob("corpus.jsonl*") if p.name in {"corpus.jsonl", "corpus.jsonl.gz"})
    if not found:
        raise DataError(f"zip for {name!r} holds no corpus.jsonl; it is not a BEIR data set")
    return found[0]


def resolve_data(
    name_or_dir: str | os.PathLike[str],
    *,
    cache_dir: Path | None = None,
    sources: Mapping[str, DataSource] | None = None,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> Path:
    """Return a local BEIR data directory for ``name_or_dir``.

    An existing directory is returned as is. A known name (see ``BEIR_SOURCES``) is downloaded once into
    ``<cache>/datasets/<name>`` (cache = ``cache_dir`` or ``cache_root()``), checksum-verified, unzipped and reused
    afterwards. Raises ``DataError`` offline, on a checksum mismatch, or for an unknown name, with the fix.
    """
    sources = BEIR_SOURCES if sources is None else sources
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    name = str(name_or_dir)
    if path.exists() or name not in sources:
        known = ", ".join(sorted(sources))
        raise DataError(
            f"{name!r} is neither a data directory nor a known data set name ({known}); pass --data DIR pointing at "
            "a BEIR folder (corpus.jsonl[.gz], queries.jsonl, qrels/)"
        )
    source = sources[name]
    target = (cache_dir or cache_root() / "datasets") / name
    if (target / _COMPLETE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        archive = Path(tmp) / f"{name}.zip"
        _download(name, source, archive, timeout_s=timeout_s, progress=progress)
        checksum = _verify(name, source, archive)
        folder = _extract(name, archive, Path(tmp) / "unzipped")
        (folder / _COMPLETE).write_text(f"{source.url}\n{checksum}\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        folder.rename(target)
    return target
