"""Properties over generated specs: every valid spec builds in both formats, reproducibly."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configdrive import build_iso, load_spec, read_iso, render
from configdrive.render import FORMATS
from configdrive.spec import check_data

KEYS = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlCnUlhzaWmRGf9FZ71XjHwiJmyMiDwGJD3OBF1lX2y alice@example",
]
LABEL = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}[a-z0-9]\Z")
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@st.composite
def ethernet(draw: st.DrawFn, index: int) -> dict[str, Any]:
    dev: dict[str, Any] = {"match": {"macaddress": f"52:54:00:00:{index // 256:02x}:{index % 256:02x}"},
                           "set-name": f"eth{index}"}
    if draw(st.booleans()):
        dev["dhcp4"] = True
    if draw(st.booleans()):
        dev["dhcp6"] = True
    if draw(st.booleans()):
        v6 = draw(st.booleans())
        net = ipaddress.ip_network(f"2001:db8:{index}::/64" if v6 else f"10.{index}.0.0/24")
        host = draw(st.integers(2, 200))
        dev["addresses"] = [f"{net[host]}/{net.prefixlen}"]
        routes = [{"to": "2001:db8:ff00::/40" if v6 else "172.16.0.0/12", "via": str(net[1])}]
        if index == 0 and draw(st.booleans()):
            routes.append({"to": "default", "via": str(net[1])})
        dev["routes"] = routes
        dev["nameservers"] = {"addresses": [str(net[53])], "search": ["example.org"]}
    if draw(st.booleans()):
        dev["mtu"] = draw(st.integers(1280, 9000))
    return dev


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    hostname = draw(LABEL)
    spec: dict[str, Any] = {"instance_id": "iid-" + draw(LABEL), "hostname": hostname}
    if draw(st.booleans()):
        spec["fqdn"] = f"{hostname}.example.org"
    if draw(st.booleans()):
        spec["meta"] = draw(st.dictionaries(LABEL, TEXT, max_size=3))
    if draw(st.booleans()):
        spec["ssh_authorized_keys"] = KEYS
    payload = draw(st.one_of(st.none(), TEXT, st.dictionaries(LABEL, TEXT, max_size=3),
                             st.lists(st.builds(lambda c: {"content_type": "text/x-shellscript",
                                                           "content": c}, TEXT), min_size=1, max_size=3)))
    if payload is not None:
        spec[draw(st.sampled_from(["user_data", "vendor_data"]))] = payload
    count = draw(st.integers(0, 3))
    if count:
        spec["network"] = {"version": 2, "ethernets": {f"eth{i}": draw(ethernet(i)) for i in range(count)}}
    if draw(st.booleans()):
        spec["files"] = [{"path": f"/etc/app/f{i}.conf", "content": draw(TEXT)} for i in range(2)]
    return spec


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_any_valid_spec_builds_reproducibly_in_both_formats(data: dict[str, Any]) -> None:
    assert check_data(data) == []
    spec = load_spec(data)
    for fmt in FORMATS:
        image = build_iso(spec, fmt)
        assert image == build_iso(load_spec(data), fmt)
        assert read_iso(image).files == dict(render(spec, fmt))
