"""User-data and vendor-data payloads -> bytes: raw text, #cloud-config YAML, or MIME multipart."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from configdrive.model import Part, VMSpec

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


#: What a text payload starts with -> its MIME type, as cloud-init's handlers tell them apart; the
#: kinds that can share a multipart message with the ``updates`` cloud-config part.
TEXT_PAYLOAD_TYPES = {
    "#cloud-config\n": "text/cloud-config",
    "#!": "text/x-shellscript",
    "#cloud-boothook\n": "text/cloud-boothook",
}


def vendor_payload(spec: VMSpec) -> bytes | None:
    """The vendor data cloud-init receives: the spec's, plus cloud-init's ``updates`` key when the
    spec sets it (a mapping gains the key; text or parts become a multipart message with a
    cloud-config part for it; spec checks refuse text of another kind)."""
    if not spec.network_updates:
        return render_payload(spec.vendor_data)
    updates = {"updates": {"network": {"when": list(spec.network_updates)}}}
    vendor = spec.vendor_data
    if vendor is None:
        return render_cloud_config(updates)
    if isinstance(vendor, Mapping):
        return render_cloud_config({**vendor, **updates})
    if isinstance(vendor, str):
        kind = next(t for start, t in TEXT_PAYLOAD_TYPES.items() if vendor.startswith(start))
        vendor = (Part(kind, vendor),)
    return render_multipart((*vendor, Part("text/cloud-config", render_cloud_config(updates).decode())))


#: The key under which ``payload_fields`` keeps what is not cloud-config (scripts, other parts).
OTHER_PARTS = ""


def payload_fields(data: bytes | None) -> Any:
    """A payload as seeds are compared (``configdrive.changes``): the keys of its cloud-config
    (a multipart message's cloud-config parts merged as cloud-init merges them, later keys
    winning), with everything else under ``OTHER_PARTS``; a payload with no cloud-config as its bytes."""
    if data is None:
        return None
    if data.startswith(b"Content-Type: multipart/"):
        import email

        config: dict[Any, Any] = {}
        others = []
        for part in email.message_from_bytes(data).walk():
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True)
            body = payload if isinstance(payload, bytes) else b""
            parsed = _cloud_config(body) if part.get_content_type() == "text/cloud-config" else None
            if parsed is None:
                others.append((part.get_content_type(), part.get_filename(), body))
            else:
                config.update(parsed)
        return {**config, OTHER_PARTS: tuple(others)} if config else data
    parsed = _cloud_config(data) if data.startswith(CLOUD_CONFIG_HEADER.rstrip()) else None
    return parsed if parsed is not None else data


def _cloud_config(body: bytes) -> dict[Any, Any] | None:
    import yaml

    try:
        parsed = yaml.safe_load(body)
    except yaml.YAMLError:
        return None
    return parsed if isinstance(parsed, dict) else None


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
    text: str = yaml.dump(
        data,
        Dumper=dumper or yaml.SafeDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 16,
    )
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
            item.replace_header("Content-Type", f'{part.content_type}; charset="{charset}"')
        filename = part.filename or f"part-{index + 1:03d}"
        item.add_header("Content-Disposition", "attachment", filename=filename)
        message.attach(item)
    return message.as_bytes()
