"""What every booted guest must show, on both generations: cloud-init finished clean, and DNS as
the guest's resolver uses it.

Clean means: ``cloud-init status --wait --long`` exits 0 with ``status: done`` and no
``degraded`` extended status (cloud-init 25.1 degrades a boot for any WARNING or DEPRECATED
line, and then ``--wait`` exits 2), and this boot's part of cloud-init.log has no WARNING,
DEPRECATED, ERROR or CRITICAL line, no traceback, no failed unit. The only exceptions are the
upstream defects in ``KNOWN_DEFECTS`` (``tests/readers/cloudinit_versions.py``: the one list, shared
with the offline reader tests), each matched in full and tolerated only where a test names it and
only on the cloud-init versions it affects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from tests.readers.cloudinit_versions import KNOWN_DEFECTS

from .harness import Boot

#: A cloud-init.log line: "2026-12-02 07:15:00,123 - schema.py[WARNING]: message".
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ - [^\[\]]+\[(?P<level>[A-Z]+)\]: (?P<message>.*)$")


def known_defect(line: str, names: Iterable[str], version: str) -> str | None:
    """The name of the :data:`KNOWN_DEFECTS` entry among ``names`` that affects cloud-init
    ``version`` and whose log message is this line's (matched in full), else None."""
    match = LOG_LINE.match(line)
    if match is None:
        return None
    for name in names:
        defect = KNOWN_DEFECTS[name]
        if version in defect.versions and re.fullmatch(defect.log, match.group("message")):
            return name
    return None


def cloud_init_version(report: dict[str, Any]) -> str:
    """major.minor of the guest's cloud-init (``/usr/bin/cloud-init 25.1.4`` -> ``25.1``)."""
    match = re.search(r"(\d+)\.(\d+)", report.get("cloud_init_version") or "")
    assert match, f"no cloud-init version in the report: {report.get('cloud_init_version')!r}"
    return f"{match.group(1)}.{match.group(2)}"


def assert_cloud_init_clean(boot: Boot, known: Iterable[str] = ()) -> None:
    """cloud-init done and clean in this boot; ``known`` names the :data:`KNOWN_DEFECTS` this boot
    may show (only on the versions they affect). A known defect's line degrades 25.1's status
    (exit 2): that is then accepted, and nothing else may have been logged."""
    report = boot.report
    assert "report_error" not in report, report
    version = cloud_init_version(report)
    known = tuple(known)
    assert set(known) <= set(KNOWN_DEFECTS), known
    problems = report["cloud_init_log"]["warnings"]
    unexpected = [line for line in problems if known_defect(line, known, version) is None]
    assert unexpected == [], f"{boot.name} (cloud-init {version}):\n" + "\n".join(unexpected)
    assert report["cloud_init_log"]["tracebacks"] == [], "\n\n".join(report["cloud_init_log"]["tracebacks"])
    status = report["status"]
    assert re.search(r"^status: done$", status, re.MULTILINE), status
    if problems:  # only known defects, checked above
        assert report["status_rc"] in (0, 2), status
    else:
        assert report["status_rc"] == 0, status
        assert "degraded" not in status, status
    assert report["failed_units"].strip() == "", report["failed_units"]


# --- DNS as the resolver uses it --------------------------------------------------------------


def dns_servers(report: dict[str, Any], link: str | None = None) -> list[str]:
    """The name servers the guest's resolver uses (systemd-resolved's per link, or resolv.conf's
    where resolvconf writes it); ``link`` narrows systemd-resolved's to one interface."""
    return _resolver_values(report, "servers", link)


def dns_domains(report: dict[str, Any], link: str | None = None) -> list[str]:
    """The search domains the guest's resolver uses (as :func:`dns_servers`)."""
    return _resolver_values(report, "domains", link)


def _resolver_values(report: dict[str, Any], key: str, link: str | None) -> list[str]:
    resolver = report["resolver"]
    table: dict[str, list[str]] = resolver[key]
    if link is None or resolver["via"] != "systemd-resolved":
        return [value for values in table.values() for value in values]
    return list(table.get(link, []))


# --- the report -------------------------------------------------------------------------------


def ifname_of(report: dict[str, Any], mac: str) -> str:
    """The guest's name for the NIC with this MAC (its first holder: a bond takes its members' MAC)."""
    return next(str(link["ifname"]) for link in report["ip_addr"] if link.get("address") == mac)


def addresses(report: dict[str, Any], ifname: str, family: str) -> list[str]:
    return [
        a["local"]
        for link in report["ip_addr"]
        if link["ifname"] == ifname
        for a in link.get("addr_info", [])
        if a["family"] == family
    ]


def global_addresses(report: dict[str, Any], family: str) -> dict[str, list[str]]:
    """{interface: addresses} of ``family`` with global scope, interfaces without any left out."""
    found: dict[str, list[str]] = {}
    for link in report["ip_addr"]:
        for a in link.get("addr_info", []):
            if a["family"] == family and a.get("scope") == "global":
                found.setdefault(link["ifname"], []).append(a["local"])
    return found


def link_details(report: dict[str, Any], ifname: str) -> dict[str, Any]:
    """``ip -d -j link`` of one interface (``linkinfo``: bond mode, VLAN id; ``master``)."""
    return next(link for link in report["ip_link_details"] if link["ifname"] == ifname)


def default_routes(report: dict[str, Any], key: str = "ip6_route") -> list[tuple[Any, Any]]:
    return [(r.get("gateway"), r.get("dev")) for r in report[key] if r["dst"] == "default"]
