"""User-data and vendor-data payloads -> bytes: raw text, #cloud-config YAML, or MIME multipart."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from configdrive.model import Part

#: The header that tells cloud-init a payload is cloud-config.
CLOUD_CONFIG_HEADER = b"#cloud-config\n"


def render_payload(payload: str | Mapping[str, Any] | tuple[Part, ...] | None) -> bytes | None:
    """The bytes cloud-init receives for a user-data or vendor-data payload, or None if absent."""
    if payload is None:
        return None
    if isinstance(payload, str):
        return payload.encode()
    if isinstance(payload, tuple):
        return render_multipart(payload)
    return render_cloud_config(payload)


def payload_fields(data: bytes | None) -> Any:
    """A payload as seeds are compared (``configdrive.changes``): a cloud-config as its mapping,
    anything else as its bytes."""
    if data is None or not data.startswith(CLOUD_CONFIG_HEADER.rstrip()):
        return data
    import yaml

    try:
        parsed = yaml.safe_load(data)
    except yaml.YAMLError:
        return data
    return parsed if isinstance(parsed, dict) else data


def render_cloud_config(config: Mapping[str, Any]) -> bytes:
    """A mapping as ``#cloud-config`` YAML, keys in the order given."""
    return CLOUD_CONFIG_HEADER + dump_yaml(dict(config))


def dump_yaml(data: Any) -> bytes:
    """Block-style YAML, keys in the order given, long lines unfolded.

    libyaml's emitter (5x faster) when PyYAML has it and every string is plain printable ASCII,
    where both emitters write the same bytes; otherwise the pure-Python one, because libyaml
    escapes characters outside the BMP and styles ``\r`` differently, and a host without libyaml
    must produce the same seed.
    """
    import yaml

    dumper = getattr(yaml, "CSafeDumper", None) if _plain(data) else None
    text: str = yaml.dump(data, Dumper=dumper or yaml.SafeDumper, sort_keys=False, default_flow_style=False,
                          allow_unicode=True, width=1 << 16)
    return text.encode()


_PLAIN = frozenset(map(chr, range(0x20, 0x7F))) | {"\n", "\t"}


def _plain(data: Any) -> bool:
    """Whether every string in ``data`` is printable ASCII (plus newline and tab)."""
    if isinstance(data, str):
        return data.isascii() and (data.isprintable() or _PLAIN.issuperset(data))
    if isinstance(data, Mapping):
        return all(_plain(k) and _plain(v) for k, v in data.items())
    if isinstance(data, (list, tuple)):
        return all(_plain(v) for v in data)
    return True


def render_multipart(parts: tuple[Part, ...]) -> bytes:
    """A MIME multipart/mixed message as cloud-init's ``make-mime`` writes it, with a boundary
    derived from the content (so identical parts give identical bytes)."""
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
    message = MIMEMultipart(boundary=f"==============={digest}==")
    for index, part in enumerate(parts):
        maintype, subtype = part.content_type.split("/", 1)
        charset = "us-ascii" if part.content.isascii() else "utf-8"
        item = MIMEText(part.content, _subtype=subtype, _charset=charset)
        if maintype != "text":
            item.replace_header("Content-Type", f"{part.content_type}; charset=\"{charset}\"")
        filename = part.filename or f"part-{index + 1:03d}"
        item.add_header("Content-Disposition", "attachment", filename=filename)
        message.attach(item)
    return message.as_bytes()
