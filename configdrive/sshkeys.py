"""OpenSSH public keys (authorized_keys lines): ``parse_ssh_key`` and the checks of each key type's blob."""

from __future__ import annotations

import base64
import binascii
import re

from configdrive.limits import CONTROL
from configdrive.model import SSHKey
from configdrive.specschema import quote

SSH_KEY_TYPES = frozenset(
    {
        "ssh-rsa",
        "ssh-dss",
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)

#: NIST curves of ECDSA keys: name -> (field prime p, curve constant b, bytes per coordinate); a = -3.
_CURVES = {
    "nistp256": (
        2**256 - 2**224 + 2**192 + 2**96 - 1,
        int("5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B", 16),
        32,
    ),
    "nistp384": (
        2**384 - 2**128 - 2**96 + 2**32 - 1,
        int("B3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875AC656398D8A2ED19D2A85C8EDD3EC2AEF", 16),
        48,
    ),
    "nistp521": (
        2**521 - 1,
        int(
            "0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF109E156193951EC7E937B1652"
            "C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00",
            16,
        ),
        66,
    ),
}


def parse_ssh_key(line: str) -> SSHKey:
    """Parse ``type base64 [comment]`` (authorized_keys without options; surrounding whitespace
    ignored). The blob is read in full as its type lays it out (RSA exponent and modulus, DSA
    p/q/g/y, Ed25519's 32 bytes, ECDSA's curve and a point on it, a security key's application),
    every length field checked against the bytes that follow and nothing left over."""
    text = line.strip(" \t\r\n")
    if CONTROL.search(text):
        raise ValueError("holds a control character or line break (a key is one line of authorized_keys)")
    fields = re.split(" +", text, maxsplit=2)
    if len(fields) < 2:
        raise ValueError("not an OpenSSH public key (expected 'type base64 [comment]')")
    key_type, blob = fields[0], fields[1]
    if key_type not in SSH_KEY_TYPES:
        raise ValueError(f"unknown key type {quote(key_type)}")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("key data is not valid base64") from None
    if base64.b64encode(raw).decode() != blob:
        raise ValueError("key data is not canonical base64 (stray padding bits)")
    _check_key_blob(key_type, _KeyBlob(raw))
    return SSHKey(key_type, blob, fields[2] if len(fields) > 2 else "")


class _KeyBlob:
    """An SSH wire-format key blob read field by field (RFC 4251 strings and mpints)."""

    def __init__(self, raw: bytes) -> None:
        self.raw, self.pos = raw, 0

    def string(self, what: str) -> bytes:
        left = len(self.raw) - self.pos
        if left < 4:
            raise ValueError(f"key data ends before the length of its {what}")
        size = int.from_bytes(self.raw[self.pos : self.pos + 4], "big")
        if size > left - 4:
            raise ValueError(f"key data is cut short: its {what} claims {size} bytes, {left - 4} follow")
        self.pos += 4 + size
        return self.raw[self.pos - size : self.pos]

    def mpint(self, what: str) -> int:
        data = self.string(what)
        if data and data[0] & 0x80:
            raise ValueError(f"key data: its {what} is negative")
        if len(data) > 1 and data[0] == 0 and not data[1] & 0x80:
            raise ValueError(f"key data: its {what} has a needless leading zero byte")
        if len(data) > 2049:  # OpenSSH: at most 16384 bits
            raise ValueError(f"key data: its {what} is longer than 16384 bits")
        return int.from_bytes(data, "big")

    def end(self) -> None:
        if self.pos != len(self.raw):
            raise ValueError(f"key data has {len(self.raw) - self.pos} bytes after the key")


def _check_key_blob(key_type: str, blob: _KeyBlob) -> None:
    if blob.string("key type") != key_type.encode():
        raise ValueError(f"key data does not hold a {key_type} key")
    if key_type == "ssh-rsa":
        exponent, modulus = blob.mpint("RSA exponent"), blob.mpint("RSA modulus")
        if exponent < 3 or exponent % 2 == 0:
            raise ValueError("key data: its RSA exponent is not an odd number of at least 3")
        if not 1024 <= modulus.bit_length() <= 16384 or modulus % 2 == 0:
            raise ValueError(
                f"key data: its RSA modulus is not an odd number of 1024 to 16384 bits (it has {modulus.bit_length()})"
            )
    elif key_type == "ssh-dss":
        p, q, g, y = (blob.mpint(f"DSA {name}") for name in "pqgy")
        if not (0 < q < p and 1 < g < p and 1 < y < p):
            raise ValueError("key data: its DSA parameters are out of range")
    elif key_type.endswith("ed25519") or key_type.startswith("sk-ssh-ed25519"):
        if len(blob.string("Ed25519 key")) != 32:
            raise ValueError("key data: its Ed25519 key is not 32 bytes")
    else:
        curve = key_type.split("-")[-1].split("@")[0]
        if blob.string("curve name") != curve.encode():
            raise ValueError(f"key data does not name the curve {curve}")
        _check_point(curve, blob.string("public point"))
    if key_type.startswith("sk-"):
        application = blob.string("security key application")
        if not application or b"\0" in application:
            raise ValueError("key data: its security key application is empty or holds a NUL byte")
    blob.end()


def _check_point(curve: str, point: bytes) -> None:
    p, b, size = _CURVES[curve]
    if len(point) != 1 + 2 * size or point[0] != 4:
        raise ValueError(
            f"key data: its public point is not an uncompressed {curve} point ({1 + 2 * size} bytes starting with 04)"
        )
    x, y = int.from_bytes(point[1 : 1 + size], "big"), int.from_bytes(point[1 + size :], "big")
    if x >= p or y >= p or (y * y - x * x * x + 3 * x - b) % p:
        raise ValueError(f"key data: its public point is not on the curve {curve}")
