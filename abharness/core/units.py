"""Units a client cannot choose. Pure: the caller passes the secrets.

The arm is a hash of the unit id, so whoever picks the unit id picks the arm (20 chosen ids cover both arms). Two
ways keep the choice with someone the experiment can trust:

* **signed** (``unit_auth: signed``): the product's backend, which knows who the user is, signs the unit id with a
  secret it shares with the proxy, ``unit_sig = hex(HMAC-SHA256(unit_secret, unit_id))``, and the page sends both.
  A missing or wrong signature is refused (403), so a browser cannot move itself to another arm.
* **proxy-issued cookie** (``unit_auth: cookie``, or any ``session_cookie``): the proxy draws a random session id and
  sets the cookie ``"<id>.<base64url(HMAC-SHA256(key, id))>"``; a cookie whose signature does not verify is
  ignored and a fresh unit issued, so a chosen cookie value never becomes a unit.

Signatures are compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["cookie_key", "issue_cookie", "read_cookie", "sign_unit", "verify_unit"]


def sign_unit(unit_id: str, secret: bytes) -> str:
    """``hex(HMAC-SHA256(secret, unit_id as UTF-8))`` — the ``unit_sig`` a product backend sends with ``unit_id``."""
    return hmac.new(secret, unit_id.encode("utf-8"), hashlib.sha256).hexdigest()


def verify_unit(unit_id: str, signature: str | None, secret: bytes) -> bool:
    """True when ``signature`` is ``sign_unit(unit_id, secret)`` (hex, case-insensitive)."""
    if not signature:
        return False
    return hmac.compare_digest(sign_unit(unit_id, secret), signature.strip().lower())


def cookie_key(token_secret: bytes) -> bytes:
    """The key that signs proxy-issued session cookies (derived, so it is never the token secret itself)."""
    return hmac.new(token_secret, b"abharness-session-cookie-v1", hashlib.sha256).digest()


def _mac(unit_id: str, key: bytes) -> str:
    digest = hmac.new(key, unit_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def issue_cookie(key: bytes, unit_id: str | None = None) -> tuple[str, str]:
    """A new (unit_id, cookie value); the unit id is 128 random bits unless given."""
    unit = unit_id or secrets.token_hex(16)
    return unit, f"{unit}.{_mac(unit, key)}"


def read_cookie(value: str | None, key: bytes) -> str | None:
    """The unit id of a cookie value this proxy issued, or None (missing, unsigned, forged, oversized)."""
    if not value or len(value) > 300:
        return None
    unit, sep, mac = value.rpartition(".")
    if not sep or not unit or not hmac.compare_digest(_mac(unit, key), mac):
        return None
    return unit
