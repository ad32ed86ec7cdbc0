"""Properties over generated specs: every valid spec builds reproducibly in every format that can
express it, and every other format refuses it with a FormatError."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configdrive import FormatError, build_iso, load_spec, read_iso, render
from configdrive.render import FORMATS
from configdrive.spec import check_data

KEYS = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlCnUlhzaWmRGf9FZ71XjHwiJmyMiDwGJD3OBF1lX2y alice@example",
]
#: A second key (RSA), with a comment drawn from any one-line text: it reaches context.sh as it is.
RSA_KEY = (
    "ssh-rsa "
    "AAAAB3NzaC1yc2EAAAADAQABAAAAgQCkG7AIrbUesLo5l9DY3ZusrvyaFIw9G3CCaA9dXhCQytYCY7Em5dYRT6+uFF"
    "GpkVqU/2IlXUCYSKwM+EflQe2JvmxEqZSlSFsO/N6bkaAo7LxC9P/sco6U8XQ46FlcJXz60r+M00gJWhX5OyuOI+GD"
    "SSayyLmMa8ksyu18JRTuaw=="
)
LABEL = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}[a-z0-9]\Z")
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
#: What a key comment may hold: no control characters or line breaks (one authorized_keys line).
COMMENT = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\u2028\u2029"), max_size=80)


@st.composite
def ethernet(draw: st.DrawFn, index: int, static: bool) -> dict[str, Any]:
    """One NIC; a ``static`` one has an IPv4 address, no DHCP and default routes only (what
    every format, OpenNebula's too, can express)."""
    dev: dict[str, Any] = {
        "match": {"macaddress": f"52:54:00:00:{index // 256:02x}:{index % 256:02x}"},
        "set-name": f"eth{index}",
    }
    if not static and draw(st.booleans()):
        dev["dhcp4"] = True
    if not static and draw(st.booleans()):
        dev["dhcp6"] = True
    if static or draw(st.booleans()):
        v6 = not static and draw(st.booleans())
        net = ipaddress.ip_network(f"2001:db8:{index}::/64" if v6 else f"10.{index}.0.0/24")
        host = draw(st.integers(2, 200))
        dev["addresses"] = [f"{net[host]}/{net.prefixlen}"]
        routes = []
        if not static and draw(st.booleans()):
            routes.append({"to": "2001:db8:ff00::/40" if v6 else "172.16.0.0/12", "via": str(net[1])})
        if index == 0 and draw(st.booleans()):
            routes.append({"to": "default", "via": str(net[1])})
        if static and draw(st.booleans()):
            net6 = ipaddress.ip_network(f"2001:db8:{index}::/64")
            dev["addresses"].append(f"{net6[host]}/64")
            if index == 0 and draw(st.booleans()):
                routes.append({"to": "default", "via": str(net6[1])})
        if routes:
            dev["routes"] = routes
        dev["nameservers"] = {"addresses": [str(net[53])], "search": ["example.org"]}
    if draw(st.booleans()):
        dev["mtu"] = draw(st.integers(1280, 9000))
    return dev


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    static = draw(st.booleans())  # only what every format can express
    hostname = draw(LABEL)
    spec: dict[str, Any] = {"instance_id": "iid-" + draw(LABEL), "hostname": hostname}
    if draw(st.booleans()):
        spec["fqdn"] = f"{hostname}.example.org"
    if not static and draw(st.booleans()):
        spec["meta"] = draw(st.dictionaries(LABEL, TEXT, max_size=3))
    if draw(st.booleans()):
        spec["ssh_authorized_keys"] = KEYS + [f"{RSA_KEY} {draw(COMMENT)}"]
    payload = draw(
        st.one_of(
            st.none(),
            TEXT,
            st.dictionaries(LABEL, TEXT, max_size=3),
            st.lists(
                st.builds(lambda c: {"content_type": "text/x-shellscript", "content": c}, TEXT), min_size=1, max_size=3
            ),
        )
    )
    if payload is not None:
        spec["user_data" if static else draw(st.sampled_from(["user_data", "vendor_data"]))] = payload
    count = draw(st.integers(0, 3))
    if count:
        spec["network"] = {"version": 2, "ethernets": {f"eth{i}": draw(ethernet(i, static)) for i in range(count)}}
    if not static and draw(st.booleans()):
        spec["files"] = [{"path": f"/etc/app/f{i}.conf", "content": draw(TEXT)} for i in range(2)]
    return spec


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_any_valid_spec_builds_reproducibly_or_is_refused(data: dict[str, Any]) -> None:
    assert check_data(data) == []
    spec = load_spec(data)
    for fmt, form in FORMATS.items():
        if form.problems(spec):
            with pytest.raises(FormatError):
                build_iso(spec, fmt)
            continue
        image = build_iso(spec, fmt)
        assert image == build_iso(load_spec(data), fmt)
        assert read_iso(image).files == dict(render(spec, fmt))
