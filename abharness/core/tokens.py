"""Signed impression tokens. Pure: the caller passes the secret and the current time.

A search response carries a token that binds the impression to what was shown: impression id, experiment, unit,
serving arm, mode, the shown doc ids in order with their teams, and an expiry. A click presents the token; the
proxy verifies the HMAC-SHA256 signature (constant-time compare), the expiry, the experiment, and that the clicked
doc was shown at the claimed position. Nothing has to be looked up in the store, so a click can be validated even
while its impression is still in the writer queue.

Format: ``base64url(json payload) "." base64url(HMAC-SHA256(secret, base64url(json payload)))``.

A layered search (``abharness.serve.layered``) logs one impression row per experiment the unit is enrolled in; its
token also carries those ``enrollments`` as ``(experiment_id, arm)`` pairs (payload key ``n``), so a click is credited
to each row without trusting the client. Tokens without ``n`` (every token issued before, and every token of a
single-experiment file) verify as before and credit one row: ``impression_id`` in ``experiment_id``/``arm``.

Rejection reasons (a bounded set, used as the ``reason`` label of ``abharness_clicks_rejected_total``):
``forged`` (malformed or bad signature), ``expired``, ``mismatch`` (other experiment, or the doc was shown at a
different position), ``unknown_doc`` (the doc was not in the impression).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Literal

from abharness.errors import TokenError

__all__ = ["ImpressionClaims", "InvalidToken", "RejectReason", "REJECT_REASONS", "sign", "verify", "check_click"]

RejectReason = Literal["forged", "expired", "mismatch", "unknown_doc"]
REJECT_REASONS: tuple[str, ...] = ("forged", "expired", "mismatch", "unknown_doc")
_VERSION = 1


class InvalidToken(TokenError):
    """A click's token or claims failed verification. ``reason`` is one of ``REJECT_REASONS``."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason: RejectReason = reason


@dataclass(frozen=True, slots=True)
class ImpressionClaims:
    """What a token asserts about one impression. ``teams[i]`` is the team (arm) of ``doc_ids[i]``."""

    impression_id: str
    experiment_id: str
    unit_id: str
    arm: str
    mode: str
    issued_at: float
    expires_at: float
    doc_ids: tuple[str, ...]
    teams: tuple[str | None, ...]
    enrollments: tuple[tuple[str, str], ...] = ()
    """Layered searches only: ``(experiment_id, arm)`` of every row the impression was logged as."""


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, body: str) -> str:
    return _b64e(hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest())


_MAC_CHARS = 43  # base64url of a 32-byte HMAC-SHA256 without padding
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def sign(claims: ImpressionClaims, secret: bytes) -> str:
    """Serialize and sign ``claims``."""
    payload = {
        "v": _VERSION,
        "i": claims.impression_id,
        "e": claims.experiment_id,
        "u": claims.unit_id,
        "a": claims.arm,
        "m": claims.mode,
        "t": round(claims.issued_at, 3),
        "x": round(claims.expires_at, 3),
        "d": list(claims.doc_ids),
        "g": list(claims.teams),
    }
    if claims.enrollments:
        payload["n"] = [list(pair) for pair in claims.enrollments]
    body = _b64e(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    return f"{body}.{_mac(secret, body)}"


def verify(token: str, secret: bytes, *, now: float, experiment_id: str | None = None) -> ImpressionClaims:
    """Check the signature, expiry and (when given) the experiment; return the claims or raise ``InvalidToken``."""
    if not isinstance(token, str):
        raise InvalidToken("forged", "impression_token is malformed; pass the impression_token of a /search response")
    body, sep, mac = token.partition(".")
    # Any malformed token (non-ASCII, wrong length, characters outside base64url) is ``forged``, never an
    # exception: compare_digest needs two ASCII str of any length, and the MAC is checked before decoding.
    if (
        not sep
        or not body
        or len(mac) != _MAC_CHARS
        or not _B64URL.issuperset(body)
        or not _B64URL.issuperset(mac)
    ):
        raise InvalidToken("forged", "impression_token is malformed; pass the impression_token of a /search response")
    if not hmac.compare_digest(_mac(secret, body), mac):
        raise InvalidToken("forged", "impression_token signature is invalid; it was not issued by this proxy")
    try:
        p = json.loads(_b64d(body))
        if not isinstance(p, dict):
            raise TypeError("payload is not an object")
        claims = ImpressionClaims(
            impression_id=str(p["i"]),
            experiment_id=str(p["e"]),
            unit_id=str(p["u"]),
            arm=str(p["a"]),
            mode=str(p["m"]),
            issued_at=float(p["t"]),
            expires_at=float(p["x"]),
            doc_ids=tuple(str(d) for d in p["d"]),
            teams=tuple(None if g is None else str(g) for g in p["g"]),
            enrollments=tuple((str(e), str(a)) for e, a in p.get("n", ())),
        )
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:  # signed but unreadable: a key shared with another program
        raise InvalidToken("forged", f"impression_token payload is unreadable ({type(exc).__name__})") from exc
    if now >= claims.expires_at:
        raise InvalidToken(
            "expired",
            f"impression_token expired {now - claims.expires_at:.0f} s ago; clicks must arrive within the token TTL",
        )
    if experiment_id is not None and claims.experiment_id != experiment_id:
        raise InvalidToken(
            "mismatch",
            f"impression_token belongs to experiment {claims.experiment_id!r}, not {experiment_id!r}",
        )
    return claims


def check_click(claims: ImpressionClaims, doc_id: str, position: int) -> str | None:
    """Check that ``doc_id`` was shown at 1-based ``position``; return its team, else raise ``InvalidToken``."""
    try:
        index = claims.doc_ids.index(doc_id)
    except ValueError:
        raise InvalidToken(
            "unknown_doc", f"doc_id {doc_id!r} was not shown in impression {claims.impression_id}"
        ) from None
    if index + 1 != position:
        raise InvalidToken(
            "mismatch",
            f"doc_id {doc_id!r} was shown at position {index + 1}, not {position}; send the position it was shown at",
        )
    return claims.teams[index]
