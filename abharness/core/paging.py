"""Result pages after the first: which documents page *n* shows, and the signed page token that carries the state.

Pure: the caller passes the secret, the clock and the rankings.

A search answers ``k`` results from ``offset``. Its response carries a *page token* binding what the next page
must continue: experiment, unit, a digest of the query, the mode, the assigned arm, the list that was served
(``served``: the arm, control after a fallback, or ``"interleaved"``), the first page's seed, the next offset, the
page size and every document shown so far with its team. The next request presents it, so page 2 is served from
the same arm even if the allocation changed in between, and never repeats a document.

Slicing (``ab_page``): the arm's ranking to depth ``offset + k``; without earlier documents the slice
``[offset:offset+k]``, with them the first ``k`` documents not shown yet (equal to the slice when the backend ranks
deterministically, and still free of repeats when it does not).

Interleaving (``interleaved_page``): team-draft interleaving is replayed from the first page's seed over both
rankings to depth ``offset + k``; when its first ``offset`` picks are exactly the documents already shown (a
deterministic backend), the page is the next ``k`` picks of the same interleaved list. When a backend re-ranked
(approximate search, a live index), the draft continues from what was shown (the same team counts and shown set,
see ``team_draft(prior=...)``) with a seed derived from the first page's seed and the offset, so again nothing is
shown twice and team sizes stay balanced.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from abharness.core.interleaving import team_draft
from abharness.errors import TokenError

__all__ = [
    "InvalidPageToken",
    "PageState",
    "ab_page",
    "interleaved_page",
    "query_digest",
    "sign_page",
    "verify_page",
]

_VERSION = 1


class InvalidPageToken(TokenError):
    """A page token that is malformed, forged, expired, or presented with another query, unit or experiment."""


@dataclass(frozen=True, slots=True)
class PageState:
    """What the next page of one result list must continue (see the module docstring)."""

    experiment_id: str
    unit_id: str
    query_digest: str
    mode: str
    arm: str
    served: str
    seed: str
    offset: int
    k: int
    shown: tuple[str, ...]
    teams: tuple[str | None, ...]
    expires_at: float


def query_digest(query: str) -> str:
    """A short digest of the query text (the token binds the query without carrying it)."""
    return hashlib.sha256(query.encode("utf-8")).hexdigest()[:16]


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _mac(secret: bytes, body: str) -> str:
    return _b64e(hmac.new(secret, b"page:" + body.encode("ascii"), hashlib.sha256).digest())


def sign_page(state: PageState, secret: bytes) -> str:
    """``base64url(json) "." base64url(HMAC-SHA256(secret, "page:" + base64url(json)))``."""
    payload = {"v": _VERSION, "e": state.experiment_id, "u": state.unit_id, "q": state.query_digest,
               "m": state.mode, "a": state.arm, "s": state.served, "r": state.seed, "o": state.offset,
               "k": state.k, "d": list(state.shown), "g": list(state.teams), "x": round(state.expires_at, 3)}
    body = _b64e(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    return f"{body}.{_mac(secret, body)}"


def verify_page(token: str, secret: bytes, *, now: float, experiment_id: str, unit_id: str, query: str) -> PageState:
    """The state of a page token, after checking signature, expiry, experiment, unit and query."""
    body, sep, mac = token.partition(".")
    if not sep or not hmac.compare_digest(_mac(secret, body), mac):
        raise InvalidPageToken("page_token is malformed or was not issued by this proxy; pass the page_token of "
                               "the previous page's /search response")
    try:
        p = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        state = PageState(str(p["e"]), str(p["u"]), str(p["q"]), str(p["m"]), str(p["a"]), str(p["s"]),
                          str(p["r"]), int(p["o"]), int(p["k"]), tuple(str(d) for d in p["d"]),
                          tuple(None if g is None else str(g) for g in p["g"]), float(p["x"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidPageToken(f"page_token payload is unreadable ({type(exc).__name__})") from exc
    if now >= state.expires_at:
        raise InvalidPageToken("page_token expired; start again from page 1")
    if state.experiment_id != experiment_id:
        raise InvalidPageToken(f"page_token belongs to experiment {state.experiment_id!r}, not {experiment_id!r}")
    if state.unit_id != unit_id:
        raise InvalidPageToken("page_token was issued to another unit; send the unit of the first page")
    if state.query_digest != query_digest(query):
        raise InvalidPageToken("page_token was issued for another query; send the first page's query unchanged")
    return state


def ab_page(ranking: Sequence[str], offset: int, k: int, shown: Sequence[str] = ()) -> list[str]:
    """The doc ids of the page at ``offset`` from one arm's ranking (to depth >= offset + k)."""
    if offset < 0 or k < 1:
        raise ValueError(f"offset={offset}, k={k}: need offset >= 0 and k >= 1")
    if not shown:
        return list(ranking[offset:offset + k])
    already = set(shown)
    return [d for d in dict.fromkeys(ranking) if d not in already][:k]


def interleaved_page(
    rankings: Mapping[str, Sequence[str]], offset: int, k: int, seed: str,
    shown: Sequence[tuple[str, str | None]] = (),
) -> list[tuple[str, str]]:
    """The (doc_id, team) pairs of the interleaved page at ``offset`` (rankings to depth >= offset + k)."""
    if offset < 0 or k < 1:
        raise ValueError(f"offset={offset}, k={k}: need offset >= 0 and k >= 1")
    full = team_draft(rankings, offset + k, random.Random(seed))
    if [tuple(p) for p in full[:offset]] == [tuple(p) for p in shown]:
        return full[offset:]
    prior = [(d, t) for d, t in shown if t is not None]
    return team_draft(rankings, k, random.Random(f"{seed}:{offset}"), prior=prior)
