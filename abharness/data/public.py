"""The public data sets the demo and the evaluation suite read, fetched from their pinned public origins.

``abharness/resources/public_data.json`` lists, per data set, the files of the ``../shared/data`` layout with the
sha256 of each file as it is there, and the public artefacts they come from (a URL pinned to a commit, its sha256
and size) with the transform from artefact to file (``copy``, ``crlf_to_lf``, ``gzip:...``, or a whole-set
conversion for Cranfield and CISI, see ``abharness.data.convert``). ``fetch_public`` downloads each artefact through
the project's one downloader (``download_file``: progress bar, truncation check), verifies its sha256, transforms,
verifies every output file against the manifest and only then moves the folder into ``<cache>/data/<name>``.

``find_data_root`` is what ``abharness demo`` and ``abharness evaluate`` call when no ``--data-root`` is given: ``$ABHARNESS_DATA``,
else ``../shared/data`` when it holds the sets, else the cache, else a fetch; offline and without data it raises one
``DataError`` line saying what to fetch and where to put it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from abharness.data.convert import DATASET_CONVERTERS, TRANSFORMS
from abharness.data.download import cache_root, download_file, effective_url, file_sha256
from abharness.errors import DataError

__all__ = [
    "PUBLIC_DATASETS",
    "SHARED_DATA",
    "DEMO_DATASETS",
    "public_manifest",
    "fetch_public",
    "cached_public",
    "public_cache_dir",
    "find_data_root",
]

SHARED_DATA = Path("../shared/data")
DEMO_DATASETS = ("scifact", "cranfield", "cisi", "stsbenchmark", "sick", "trec_qc")
_COMPLETE = ".abharness-complete"


@cache
def public_manifest() -> dict[str, Any]:
    """The packaged manifest (``abharness/resources/public_data.json``) as a dict."""
    text = resources.files("abharness").joinpath("resources/public_data.json").read_text(encoding="utf-8")
    return json.loads(text)["datasets"]


PUBLIC_DATASETS: tuple[str, ...] = tuple(public_manifest())


def public_cache_dir(cache_dir: Path | None = None) -> Path:
    """Where fetched sets live: ``cache_dir`` or ``<cache root>/data`` (one sub-folder per set)."""
    return cache_dir if cache_dir is not None else cache_root() / "data"


def _entry(name: str) -> dict[str, Any]:
    manifest = public_manifest()
    if name not in manifest:
        raise DataError(f"{name!r} is not a known public data set; known: {', '.join(manifest)} (or 'all')")
    return manifest[name]


def _has_files(folder: Path, name: str) -> bool:
    return all((folder / rel).is_file() for rel in _entry(name)["files"])


def cached_public(name: str, cache_dir: Path | None = None) -> Path | None:
    """The cached, verified copy of ``name``, or None when it was never fetched completely."""
    folder = public_cache_dir(cache_dir) / name
    return folder if (folder / _COMPLETE).is_file() and _has_files(folder, name) else None


def _fetch_hint(names: Iterable[str], cache_dir: Path | None) -> str:
    wanted = " ".join(names)
    return (
        f"on a machine with network run `abharness data fetch {wanted}` and copy the folders it prints into "
        f"{public_cache_dir(cache_dir)}/ here, or pass --data-root DIR holding them (as in ../shared/data)"
    )


def _verified_output(name: str, rel: str, spec: Mapping[str, Any], data: bytes) -> bytes:
    if hashlib.sha256(data).hexdigest() == spec["sha256"]:
        return data
    content = spec.get("content_sha256")
    if content and rel.endswith(".gz"):
        import gzip

        if hashlib.sha256(gzip.decompress(data)).hexdigest() == content:
            return data  # this zlib compresses differently; the content is the verified one
    raise DataError(
        f"{name}/{rel}: built file does not match the manifest's sha256 {spec['sha256'][:16]}...; the transform "
        f"{spec['transform']!r} no longer reproduces the public copy (please report this)"
    )


def fetch_public(
    name: str,
    *,
    cache_dir: Path | None = None,
    base_url: str | None = None,
    timeout_s: float = 60.0,
    progress: bool = True,
    force: bool = False,
    hint: str | None = None,
) -> Path:
    """Download, verify, transform and cache the public data set ``name``; return its folder (reused when cached).

    Every artefact is checked against its sha256 before use and every output file against the sha256 of the
    shared copy; on any failure nothing is left in the cache. ``base_url`` (or ``$ABHARNESS_DATA_BASE_URL``)
    replaces the scheme and host of every URL (mirrors, tests). ``hint`` ends every error message (what to do).
    """
    entry = _entry(name)
    if not force and (hit := cached_public(name, cache_dir)):
        return hit
    root = public_cache_dir(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    hint = hint or _fetch_hint([name], cache_dir)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}-") as tmp:
        staged: dict[str, bytes] = {}
        for source in entry["sources"]:
            url = effective_url(source["url"], base_url)
            target = Path(tmp) / "download" / source["name"]
            target.parent.mkdir(exist_ok=True)
            download_file(url, target, label=f"{name}/{source['name']}", hint=hint, size_bytes=source["size"],
                          timeout_s=timeout_s, progress=progress)
            digest = file_sha256(target)
            if digest != source["sha256"]:
                raise DataError(
                    f"checksum mismatch for {name}/{source['name']} from {url}: sha256 {digest[:16]}... != expected "
                    f"{source['sha256'][:16]}...; the file is corrupt or changed upstream, nothing was cached. {hint}"
                )
            staged[source["name"]] = target.read_bytes()
        if entry.get("convert"):
            staged = DATASET_CONVERTERS[entry["convert"]](staged)
        folder = Path(tmp) / name
        for rel, spec in entry["files"].items():
            data = _verified_output(name, rel, spec, TRANSFORMS[spec["transform"]](staged[spec["from"]]))
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        (folder / "SOURCE.md").write_text(_source_md(name, entry), encoding="utf-8")
        (folder / _COMPLETE).write_text(
            "".join(f"{spec['sha256']}  {rel}\n" for rel, spec in entry["files"].items()), encoding="utf-8"
        )
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        folder.rename(final)
    return final


def _source_md(name: str, entry: Mapping[str, Any]) -> str:
    lines = [f"# {name}: fetched by abharness", "", entry["description"], "", f"License / terms: {entry['license']}", "",
             "## Downloaded (sha256 verified)", ""]
    lines += [f"- {s['url']}  sha256 `{s['sha256']}`" for s in entry["sources"]]
    if entry.get("convert"):
        lines += ["", f"Converted with `abharness.data.convert.{entry['convert']}` (rules in its docstring)."]
    lines += ["", "## Files (sha256 equal to ../shared/data)", ""]
    lines += [f"- `{rel}` from `{s['from']}` ({s['transform']})  sha256 `{s['sha256']}`" for rel, s in entry["files"].items()]
    return "\n".join(lines) + "\n"


def find_data_root(
    data: Path | None,
    needed: Sequence[str] = DEMO_DATASETS,
    *,
    fetch: bool = True,
    cache_dir: Path | None = None,
    shared: Path = SHARED_DATA,
    progress: bool = True,
) -> Path:
    """The folder whose sub-folders hold the ``needed`` data sets: ``data`` if given, else ``$ABHARNESS_DATA``,
    else ``shared`` (``../shared/data``) when it holds them all, else the cache (fetching what is missing when
    ``fetch``). Raises ``DataError`` with one line saying what to fetch and where to put it."""
    if data is not None:
        if not Path(data).is_dir():
            raise DataError(f"--data-root {data}: no such directory; pass the folder holding {', '.join(needed)}, "
                            "or leave --data-root out to use ../shared/data or the cache")
        return Path(data)
    if env := os.environ.get("ABHARNESS_DATA"):
        return Path(env)
    if all(_has_files(shared / n, n) for n in needed):
        return shared
    missing = [n for n in needed if cached_public(n, cache_dir) is None]
    if not missing:
        return public_cache_dir(cache_dir)
    hint = _fetch_hint(missing, cache_dir)
    if not fetch:
        raise DataError(f"no data: {shared} does not hold {', '.join(missing)} and the cache lacks them; {hint}")
    for name in missing:
        fetch_public(name, cache_dir=cache_dir, progress=progress, hint=hint)
    return public_cache_dir(cache_dir)
