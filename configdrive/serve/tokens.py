"""IMDSv2 session tokens: bound to the VM that asked and expiring, checked without server state.

A token is ``<expiry>.<mac>``, the MAC an HMAC-SHA256 over the VM id and the expiry under a
key made at start: a token from another VM, a changed expiry or a token from before a restart
fails the check. As on AWS, the TTL is 1 to 21600 seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time

TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TTL = 21600


class TokenIssuer:
    """Issues and checks tokens under one secret key (random per process unless given)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or os.urandom(32)

    def issue(self, vm_id: str, ttl: int, now: float | None = None) -> str:
        expiry = int(now if now is not None else time.time()) + ttl
        return f"{expiry}.{self._mac(vm_id, expiry)}"

    def valid(self, token: str, vm_id: str, now: float | None = None) -> bool:
        """Whether ``token`` was issued to ``vm_id`` and has not expired."""
        expiry_text, _, mac = token.partition(".")
        if not _digits(expiry_text, 12):
            return False
        expiry = int(expiry_text)
        if expiry <= (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(mac, self._mac(vm_id, expiry))

    def _mac(self, vm_id: str, expiry: int) -> str:
        return hmac.new(self._key, f"{vm_id}\0{expiry}".encode(), hashlib.sha256).hexdigest()


def parse_ttl(value: str | None) -> int | None:
    """The TTL a token request asks for, or None when missing or outside 1..21600."""
    if value is None or not _digits(value.strip(), 6):
        return None
    ttl = int(value)
    return ttl if 1 <= ttl <= MAX_TTL else None


def _digits(text: str, most: int) -> bool:
    return 0 < len(text) <= most and text.isascii() and text.isdigit()
