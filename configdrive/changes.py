"""What cloud-init 22.4 does with a changed seed, as data, and the verdicts for two seeds' differences.

``RULES`` says, per spec field, what happens at the next boot when the instance id stays the same
(measured in booted Debian 12 guests; tests/vm asserts each row). With a new instance id cloud-init
treats the VM as new: every per-instance module runs again, network config is applied again and
the SSH host keys are regenerated; keys removed from the spec stay in ``authorized_keys``.

Seeds are compared as cloud-init reads them, by the fields each format's ``fields`` view gives,
so a spec, a store entry and an ISO read back compare alike. No value appears in a verdict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from configdrive.errors import FormatError, Problem
from configdrive.model import FileTree
from configdrive.render import Format
from configdrive.render.userdata import OTHER_PARTS

Applies = Literal["next-boot", "new-instance", "never"]


@dataclass(frozen=True)
class Rule:
    """What cloud-init does at the next boot with a changed field while the instance id stays."""

    same_id: Applies
    why: str


#: Spec field -> what cloud-init 22.4 does with a change when the instance id stays the same.
#: ``user_data.<key>`` / ``vendor_data.<key>`` rows are cloud-config keys; other keys of a
#: cloud-config, and payloads that are not cloud-config, fall under ``user_data`` / ``vendor_data``.
RULES: dict[str, Rule] = {
    "instance_id": Rule(
        "next-boot",
        "a new instance id: cloud-init treats the VM as new, runs every "
        "per-instance module again and regenerates the SSH host keys",
    ),
    "hostname": Rule("next-boot", "cloud-init sets the hostname and /etc/hosts on every boot"),
    "ssh_authorized_keys": Rule(
        "new-instance", "keys are installed once per instance; a removed key stays in authorized_keys even then"
    ),
    "network": Rule(
        "new-instance",
        "network config is applied once per instance, unless the seed asks "
        "cloud-init to apply it on every boot (updates.network.when: [boot])",
    ),
    "user_data": Rule("new-instance", "runcmd, scripts, packages, users and write_files run once per instance"),
    "user_data.bootcmd": Rule("next-boot", "bootcmd runs on every boot"),
    "vendor_data": Rule("new-instance", "vendor data runs once per instance, as user data does"),
    "files": Rule("new-instance", "config-drive files are written once per instance"),
    "availability_zone": Rule("never", "cloud-init only records it in its instance data"),
    "meta": Rule("never", "cloud-init only records it in its instance data"),
}

#: What the verdict says when the instance id changes too.
NEW_ID_WHY = "the instance id changes too, so cloud-init treats the VM as new (SSH host keys are regenerated)"


@dataclass(frozen=True)
class Verdict:
    """One changed field: when cloud-init applies it (``applies``) and why."""

    field: str
    applies: Applies
    why: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "applies": self.applies, "why": self.why}


def summary(fields: Mapping[str, Any]) -> dict[str, str]:
    """A seed's ``fields`` view as compared: each field, a cloud-config payload key by key (its
    scripts and other parts under the payload's own name), -> a short digest of its value.
    Small enough for the watcher to keep per VM, and free of values."""
    flat: dict[str, str] = {}
    for name, value in fields.items():
        if name in ("user_data", "vendor_data") and isinstance(value, dict):
            for key, part in value.items():
                flat[name if key == OTHER_PARTS else f"{name}.{key}"] = _digest(part)
        elif value is not None:
            flat[name] = _digest(value)
    return flat


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=repr)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def changed_fields(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The fields whose digests differ between two summaries."""
    return sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))


def compare(fmt: Format, old_tree: FileTree, new_tree: FileTree) -> list[Verdict]:
    """The verdicts for the change from one of ``fmt``'s trees to another."""
    if fmt.fields is None:
        raise FormatError([Problem("", f"{fmt.name}: its seeds cannot be compared")])
    return verdicts(fmt, summary(fmt.fields(old_tree)), fmt.fields(new_tree))


def verdicts(fmt: Format, old: Mapping[str, str], new: Mapping[str, Any]) -> list[Verdict]:
    """What cloud-init will do at the next boot with each field that differs: ``old`` is the
    ``summary`` of the seed it had, ``new`` the ``fmt.fields`` view of the seed it gets."""
    changed = changed_fields(old, summary(new))
    new_id = "instance_id" in changed and fmt.fixed_instance_id is None
    user, vendor = new.get("user_data"), new.get("vendor_data")
    network_every_boot = "boot" in _network_update_events(_merged(user, vendor, "updates"))
    out = []
    for name in changed:
        rule = RULES.get(name) or RULES[name.partition(".")[0]]
        applies, why = rule.same_id, rule.why
        key = name.partition(".")[2]
        if name.startswith("vendor_data.") and _replaced_by_user_data(user, vendor, key):
            applies, why = (
                "never",
                f"the user data has its own {key!r}, which replaces the vendor data's: cloud-init "
                "merges vendor data under user data key by key",
            )
        elif name == "instance_id" and fmt.fixed_instance_id is not None:
            applies, why = (
                "never",
                (
                    f"cloud-init gives every {fmt.name} guest the instance id "
                    f"{fmt.fixed_instance_id!r}, whatever the seed says"
                ),
            )
        elif applies == "new-instance" and name == "network" and network_every_boot:
            applies, why = "next-boot", "the seed asks cloud-init to apply network config on every boot"
        elif applies == "new-instance" and new_id:
            applies, why = "next-boot", NEW_ID_WHY
        elif applies == "new-instance" and fmt.fixed_instance_id is not None:
            applies, why = (
                "never",
                (
                    f"{rule.why}; cloud-init gives every {fmt.name} guest the same "
                    f"instance id {fmt.fixed_instance_id!r}, so that never happens again"
                ),
            )
        out.append(Verdict(name, applies, why))
    return out


def _replaced_by_user_data(user: Any, vendor: Any, key: str) -> bool:
    """Whether the user data's cloud-config replaces the vendor data's ``key``. cloud-init 22.4
    merges the two cloud-configs user data first (``mergemanydict``, no merge_how): a key both
    have keeps the user data's value, except that two mappings are merged key by key."""
    if not (isinstance(user, dict) and isinstance(vendor, dict) and key in user and key in vendor):
        return False
    return not (isinstance(user[key], dict) and isinstance(vendor[key], dict))


def _merged(user: Any, vendor: Any, key: str) -> Any:
    """The value of cloud-config ``key`` after cloud-init merged vendor data under user data."""
    if _replaced_by_user_data(user, vendor, key):
        return user[key]
    values = [p[key] for p in (user, vendor) if isinstance(p, dict) and isinstance(p.get(key), dict)]
    if len(values) == 2:
        return _merge_mappings(values[0], values[1])
    return values[0] if values else None


def _merge_mappings(first: dict[Any, Any], second: dict[Any, Any]) -> dict[Any, Any]:
    """Two mappings merged as cloud-init's default merger does: ``first`` wins, mappings recurse."""
    out = dict(second)
    for key, value in first.items():
        other = out.get(key)
        out[key] = _merge_mappings(value, other) if isinstance(value, dict) and isinstance(other, dict) else value
    return out


def _network_update_events(payload: Any) -> set[str]:
    """The events of an ``updates`` mapping's ``network.when``."""
    if not isinstance(payload, dict):
        return set()
    network = payload.get("network")
    when = (network.get("when") if isinstance(network, dict) else None) or []
    return {str(event) for event in when} if isinstance(when, list) else set()
