"""Is the WAL index (``-shm``) of a SQLite database still safe to write through its memory mapping?

SQLite maps ``-shm`` into memory; a write to the mapping faults with SIGBUS when the file shrank below a mapped page,
was made immutable or append-only, or its file system went read-only. ``abharness.stores.sqlite`` asks
``shm_problem`` before every transaction and stops touching its connections when it answers.

Only by path (``stat``, ``statvfs``, ``statx``), never ``open``/``close``: POSIX record locks belong to the process
and the inode, and closing *any* descriptor of the ``-shm`` drops every lock the process holds on it, among them
SQLite's shared "dead-man switch" lock that tells other processes this one has the WAL index mapped. A process
opening the database after that believes it is the first, truncates the ``-shm`` and rebuilds it, and this
process's next commit faults with SIGBUS (how ``abharness ingest`` died while a test polled its database, until
2026-12-03).
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["SHM_MIN_BYTES", "shm_problem"]

SHM_MIN_BYTES = 32_768  # SQLite maps the WAL index in 32 KiB regions

# statx(2) reports the immutable and append-only inode flags by path (no descriptor opened).
_AT_FDCWD = -100
_STATX_BASIC_STATS = 0x7FF
_STATX_ATTR_IMMUTABLE = 0x10
_STATX_ATTR_APPEND = 0x20
_STATX_BUF_BYTES = 256  # sizeof(struct statx); stx_attributes at offset 8, stx_attributes_mask at offset 56

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - no C library to ask: the flag check is skipped
    _LIBC = None


def _statx_attributes(path: str) -> int | None:
    """The inode's immutable/append-only bits that the file system reports (``statx``), or None if unknown."""
    statx = getattr(_LIBC, "statx", None)
    if statx is None:
        return None
    buf = ctypes.create_string_buffer(_STATX_BUF_BYTES)
    if statx(_AT_FDCWD, os.fsencode(path), 0, _STATX_BASIC_STATS, buf) != 0:
        return None
    attributes = int.from_bytes(buf.raw[8:16], sys.byteorder)
    known = int.from_bytes(buf.raw[56:64], sys.byteorder)
    return attributes & known & (_STATX_ATTR_IMMUTABLE | _STATX_ATTR_APPEND)


def shm_problem(shm: str) -> str | None:
    """Why writing the mapped WAL index ``shm`` would fault (SIGBUS), or None (see the module doc: by path only)."""
    try:
        st = os.stat(shm)
    except FileNotFoundError:
        return None  # not created yet, or unlinked (the mapping of an unlinked file stays valid)
    except OSError as exc:
        return f"has an unreadable WAL index -shm ({exc.strerror})"
    if st.st_size < SHM_MIN_BYTES:
        return "has a truncated WAL index (-shm)"
    try:
        if os.statvfs(shm).f_flag & os.ST_RDONLY:
            return "is on a file system that went read-only"
    except FileNotFoundError:
        return None  # unlinked since the stat
    except OSError as exc:
        return f"has an unreadable WAL index -shm ({exc.strerror})"
    if _statx_attributes(shm):
        return "has an immutable or append-only WAL index (-shm); SQLite can no longer write it"
    return None
