"""Seed builder benchmark: configdrive (in-process) against genisoimage, xorriso, cloud-localds and
openstacksdk on the same files, on this machine, in one run. Prints tables; writes bench/RESULTS.md.

    bench/setup.sh                 # once: apt tools + openstacksdk in bench/.venv
    python3 bench/run.py           # about 3 minutes; --quick for a smoke run

Python paths are timed in-process (a fresh worker process per workload); commands as whole
processes with hyperfine. Peers get the files configdrive rendered, so everyone writes the same
content (openstacksdk writes what its API can express; see the notes in the table).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_PYTHON = BENCH / ".venv" / "bin" / "python"
sys.path.insert(0, str(ROOT))

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlCnUlhzaWmRGf9FZ71XjHwiJmyMiDwGJD3OBF1lX2y alice@example"


# --- workloads ----------------------------------------------------------------------------------


def typical_spec(i: int = 0, user_data: Any = None) -> dict[str, Any]:
    """Two NICs (DHCPv4 + static), a key, ~1 KB cloud-config user-data, vendor-data: 4 NoCloud files."""
    mac = f"52:54:00:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
    mac2 = f"52:54:01:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
    return {
        "instance_id": f"iid-bench-{i:05d}",
        "hostname": f"vm{i:05d}",
        "fqdn": f"vm{i:05d}.example.org",
        "availability_zone": "zone-a",
        "meta": {"role": "web", "owner": "team-blue"},
        "ssh_authorized_keys": [KEY],
        "user_data": user_data
        if user_data is not None
        else {
            "package_update": True,
            "packages": ["nginx", "curl", "jq", "prometheus-node-exporter"],
            "users": [
                {
                    "name": "deploy",
                    "groups": ["sudo"],
                    "shell": "/bin/bash",
                    "sudo": "ALL=(ALL) NOPASSWD:ALL",
                    "ssh_authorized_keys": [KEY],
                }
            ],
            "write_files": [
                {
                    "path": "/etc/nginx/conf.d/app.conf",
                    "permissions": "0644",
                    "content": "server {\n  listen 80;\n  server_name _;\n  location / { proxy_pass "
                    f"http://127.0.0.1:8080; }}\n}}\n# vm {i}\n",
                },
                {"path": "/etc/motd", "content": f"vm{i:05d}: managed by configdrive\n"},
            ],
            "runcmd": [["systemctl", "enable", "--now", "nginx"], ["sh", "-c", "echo ready > /var/tmp/ready"]],
        },
        "vendor_data": '#cloud-config\nbootcmd:\n  - [sh, -c, "echo vendor > /var/tmp/vendor"]\n',
        "network": {
            "version": 2,
            "ethernets": {
                "eth0": {"match": {"macaddress": mac}, "set-name": "eth0", "dhcp4": True},
                "eth1": {
                    "match": {"macaddress": mac2},
                    "set-name": "eth1",
                    "addresses": [f"10.{(i >> 8) & 255}.{i & 255}.10/16"],
                    "routes": [{"to": "192.168.0.0/16", "via": f"10.{(i >> 8) & 255}.0.1"}],
                    "nameservers": {"addresses": ["10.0.0.53"], "search": ["example.org"]},
                },
            },
        },
    }


def opennebula_spec(i: int = 0) -> dict[str, Any]:
    """The typical spec as OpenNebula's CONTEXT can carry it: static IPv4 on both NICs with a
    default gateway, no vendor data, meta or availability zone."""
    spec = typical_spec(i)
    for key in ("vendor_data", "meta", "availability_zone"):
        del spec[key]
    eth0 = spec["network"]["ethernets"]["eth0"]
    del eth0["dhcp4"], eth0["set-name"]
    eth0.update(addresses=[f"192.0.2.{10 + i % 200}/24"], routes=[{"to": "default", "via": "192.0.2.1"}])
    eth1 = spec["network"]["ethernets"]["eth1"]
    del eth1["routes"], eth1["set-name"]
    return spec


def big_user_data(size: int = 60 * 1024) -> str:
    lines = ["#!/bin/sh", "set -eu"]
    n = 0
    while sum(len(line) + 1 for line in lines) < size:
        lines.append(f"echo 'provisioning step {n:05d}: configure, verify, record' >> /var/log/p.log")
        n += 1
    return "\n".join(lines) + "\n"


WORKLOADS = {
    "nocloud-typical": ("nocloud", lambda: typical_spec()),
    "configdrive-full": ("configdrive", lambda: typical_spec()),
    "nocloud-60k-user-data": ("nocloud", lambda: typical_spec(user_data=big_user_data())),
    # peers: genisoimage -V CONTEXT on the same context.sh (OpenNebula's front end builds it so)
    "opennebula-context": ("opennebula", lambda: opennebula_spec()),
}


# --- configdrive, in-process (run as a worker: a fresh process per workload) --------------------


def worker(args: list[str]) -> None:
    """``run.py --worker FMT SPEC.json RUNS``: times data -> validated -> ISO bytes, prints JSON."""
    fmt, spec_path, runs = args[0], args[1], int(args[2])
    from configdrive.iso import pack_iso
    from configdrive.render import get_format
    from configdrive.seed import build_iso, load

    data = json.loads(Path(spec_path).read_text())
    form = get_format(fmt)
    for _ in range(20):
        build_iso(data, fmt)
    times, stages = [], {"validate": [], "render": [], "pack": []}
    clock = time.perf_counter_ns
    for _ in range(runs):
        t0 = clock()
        build_iso(data, fmt)  # the pipeline: plain data -> validated -> tree -> ISO bytes
        times.append(clock() - t0)
    for _ in range(max(50, runs // 4)):
        t0 = clock()
        spec = load(data)
        t1 = clock()
        tree = form.render(spec)
        t2 = clock()
        pack_iso(tree, form.label)
        t3 = clock()
        for name, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            stages[name].append(value)
    image = build_iso(data, fmt)
    print(
        json.dumps(
            {
                "times": [t / 1e9 for t in times],
                "size": len(image),
                "sha256": hashlib.sha256(image).hexdigest(),
                "stages": {k: statistics.median(v) / 1e6 for k, v in stages.items()},
                "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            }
        )
    )


def batch_worker(args: list[str]) -> None:
    """``run.py --batch-worker FMT COUNT OUTDIR``: COUNT distinct specs -> validated -> ISO -> file.

    The durable row is the library's call for many seeds, ``configdrive.output.write_files`` (the
    batched write the watcher's full sync uses: temp files, one fsync pass, renames, one folder
    sync per 500), fed by a generator, so images are built as they are written."""
    fmt, count, out = args[0], int(args[1]), Path(args[2])
    from configdrive.output import write_file, write_files
    from configdrive.seed import build_iso
    from configdrive.spec import spec_from_data

    specs = [typical_spec(i) for i in range(count)]
    for data in specs[:20]:  # warm-up: the validator, imports and caches, so neither pass pays them
        build_iso(spec_from_data(data), fmt)
    t0 = time.perf_counter()
    for data in specs:  # the same builds, kept nowhere: what writing is compared against
        build_iso(spec_from_data(data), fmt)
    memory = time.perf_counter() - t0
    digests = set()

    def images() -> Any:
        for i, data in enumerate(specs):
            image = build_iso(spec_from_data(data), fmt)
            digests.add(hashlib.sha256(image).digest())
            yield f"{i:05d}.iso", image

    t0 = time.perf_counter()
    written = write_files(out, images())
    total = time.perf_counter() - t0
    assert written == count
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    plain_dir = out / "plain"
    plain_dir.mkdir()
    t0 = time.perf_counter()
    for i, data in enumerate(specs):  # the same work with plain writes: what the build itself costs
        _plain_write(plain_dir / f"{i:05d}.iso", build_iso(spec_from_data(data), fmt))
    plain = time.perf_counter() - t0
    # The floors: the same bytes, already in memory (the first 1,000 read back), written with
    # plain write(), with write_file (an fsync and a folder sync per file) and with write_files;
    # scaled to ``count``.
    sample = [(out / f"{i:05d}.iso").read_bytes() for i in range(min(count, 1000))]
    floors = {}
    for name, write in (("floor", _plain_write), ("fsync_floor", write_file)):
        folder = out / name
        folder.mkdir()
        t0 = time.perf_counter()
        for i, image in enumerate(sample):
            write(folder / f"{i:05d}.iso", image)
        floors[name] = (time.perf_counter() - t0) * count / len(sample)
    folder = out / "batch_floor"
    folder.mkdir()
    t0 = time.perf_counter()
    write_files(folder, ((f"{i:05d}.iso", image) for i, image in enumerate(sample)))
    floors["batch_floor"] = (time.perf_counter() - t0) * count / len(sample)
    print(
        json.dumps({"total": total, "plain": plain, "memory": memory, **floors, "distinct": len(digests), "rss": rss})
    )


def _plain_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


# --- measuring ------------------------------------------------------------------------------------


def run_json(cmd: list[str], **kw: Any) -> Any:
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    return json.loads(done.stdout.strip().splitlines()[-1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def hyperfine(cmd: list[str], runs: int, cwd: Path, env: dict[str, str] | None = None) -> list[float]:
    """Whole-process times of ``cmd`` (seconds), no shell in between."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [
                "hyperfine",
                "-N",
                "--style",
                "none",
                "--warmup",
                "3",
                "--runs",
                str(runs),
                "--export-json",
                out.name,
                shlex.join(cmd),
            ],
            check=True,
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return list(json.loads(Path(out.name).read_text())["results"][0]["times"])


RSS_PROBE = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
)


def peak_rss(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> int:
    """Peak RSS of the largest process in ``cmd``'s tree (ru_maxrss of waited-for descendants)."""
    done = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, *cmd], check=True, cwd=cwd, env=env, capture_output=True, text=True
    )
    return int(done.stdout.strip())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def peer_commands(fmt: str, tree: Path, out: Path) -> dict[str, list[str]]:
    from configdrive.render import get_format

    label = get_format(fmt).label
    cmds = {
        "genisoimage -J -r": ["genisoimage", "-quiet", "-J", "-r", "-V", label, "-o", str(out), str(tree)],
        "xorriso -as mkisofs": [
            "xorriso",
            "-as",
            "mkisofs",
            "-quiet",
            "-J",
            "-r",
            "-V",
            label,
            "-o",
            str(out),
            str(tree),
        ],
    }
    if fmt == "nocloud":
        extra = []
        if (tree / "network-config").exists():
            extra += ["-N", str(tree / "network-config")]
        if (tree / "vendor-data").exists():
            extra += ["-V", str(tree / "vendor-data")]
        cmds["cloud-localds"] = ["cloud-localds", *extra, str(out), str(tree / "user-data"), str(tree / "meta-data")]
    return cmds


def openstack_peer(tree: Path, runs: int, work: Path) -> dict[str, Any] | None:
    """openstacksdk's configdrive.build in its own venv, in-process (it runs genisoimage itself)."""
    if not VENV_PYTHON.exists():
        return None
    latest = tree / "openstack" / "latest"
    versions = sorted(p.name for p in (tree / "openstack").iterdir() if p.name != "content")
    payload = {
        "metadata": json.loads((latest / "meta_data.json").read_text()),
        "user_data": (latest / "user_data").read_text() if (latest / "user_data").exists() else None,
        "versions": versions,
        "network_data": json.loads((latest / "network_data.json").read_text())
        if (latest / "network_data.json").exists()
        else None,
        "vendor_data": json.loads((latest / "vendor_data.json").read_text()),
        "runs": runs,
    }
    spec = work / "openstack-input.json"
    spec.write_text(json.dumps(payload))
    result = run_json([str(VENV_PYTHON), str(BENCH / "openstack_worker.py"), str(spec)])
    time.sleep(1.1)
    again = run_json([str(VENV_PYTHON), str(BENCH / "openstack_worker.py"), str(spec), "1"])
    result["identical"] = again["sha256"] == result["sha256"]
    return result


def row(
    tool: str,
    times: list[float],
    size: int,
    rss: int,
    identical: bool | None,
    note: str = "",
    stages: dict[str, float] | None = None,
) -> dict[str, Any]:
    return {
        "tool": tool,
        "median_ms": statistics.median(times) * 1e3,
        "p95_ms": pct(times, 0.95) * 1e3,
        "runs": len(times),
        "size": size,
        "rss_mib": rss / 2**20,
        "identical": identical,
        "note": note,
        "stages": stages,
    }


def bench_workload(name: str, fmt: str, data: dict[str, Any], work: Path, quick: bool) -> list[dict[str, Any]]:
    from configdrive.output import write_tree
    from configdrive.render import render
    from configdrive.spec import spec_from_data

    spec_file = work / f"{name}.json"
    spec_file.write_text(json.dumps(data))
    runs = 100 if quick else 1000
    ours = run_json([sys.executable, __file__, "--worker", fmt, str(spec_file), str(runs)])
    env = dict(os.environ, TZ="Pacific/Kiritimati")
    time.sleep(1.1)  # rebuild later, in another process and time zone
    again = run_json([sys.executable, __file__, "--worker", fmt, str(spec_file), "1"], env=env)
    rows = [
        row(
            "configdrive (in-process)",
            ours["times"],
            ours["size"],
            ours["rss"],
            again["sha256"] == ours["sha256"],
            "data -> validate -> render -> ISO bytes",
            ours["stages"],
        )
    ]
    tree = work / f"{name}-tree"
    write_tree(tree, render(spec_from_data(data), fmt))
    for tool, cmd in peer_commands(fmt, tree, work / f"{name}.iso").items():
        proc_runs = 20 if quick else (60 if tool.startswith("xorriso") else 200)
        times = hyperfine(cmd, proc_runs, work)
        first = digest(work / f"{name}.iso")
        time.sleep(1.1)
        subprocess.run(cmd, check=True, capture_output=True, cwd=work)
        rows.append(
            row(
                tool,
                times,
                (work / f"{name}.iso").stat().st_size,
                peak_rss(cmd, work),
                digest(work / f"{name}.iso") == first,
                "whole process",
            )
        )
    if fmt == "configdrive":
        result = openstack_peer(tree, 20 if quick else 100, work)
        if result:
            rows.append(
                row(
                    "openstacksdk configdrive.build",
                    result["times"],
                    result["size"],
                    result["rss"],
                    result["identical"],
                    "in-process, runs genisoimage; no ec2/, no vendor_data.json, same "
                    f"files in every version; returns gzip+base64 ({result['encoded']:,} B)",
                )
            )
    return rows


def bench_batch(count: int, peer_count: int, work: Path) -> list[dict[str, Any]]:
    from configdrive.output import write_tree
    from configdrive.render import render
    from configdrive.spec import spec_from_data

    out = work / "batch"
    out.mkdir()
    ours = run_json([sys.executable, __file__, "--batch-worker", "nocloud", str(count), str(out)])
    rows = [
        {
            "tool": "configdrive (in-process, output.write_files: atomic, batched fsync)",
            "seeds": count,
            "seconds": ours["total"],
            "rss_mib": ours["rss"] / 2**20,
            "note": f"{ours['distinct']:,} distinct images; temp files, fsync pass, renames, "
            "one folder sync per 500 (the watcher's full sync)",
        },
        {
            "tool": "configdrive (in-process, in memory: built, not written)",
            "seeds": count,
            "seconds": ours["memory"],
            "rss_mib": None,
            "note": "validate + render + pack only",
        },
        {
            "tool": "configdrive (in-process, plain write())",
            "seeds": count,
            "seconds": ours["plain"],
            "rss_mib": None,
            "note": "no fsync: the build's own cost plus the page cache",
        },
        {
            "tool": "floor: same bytes from memory, plain write()",
            "seeds": count,
            "seconds": ours["floor"],
            "rss_mib": None,
            "note": "1,000 written, scaled",
        },
        {
            "tool": "floor: same bytes from memory, write_file (fsync)",
            "seeds": count,
            "seconds": ours["fsync_floor"],
            "rss_mib": None,
            "note": "1,000 written, scaled; one file at a time: fsync + folder sync each",
        },
        {
            "tool": "floor: same bytes from memory, output.write_files",
            "seeds": count,
            "seconds": ours["batch_floor"],
            "rss_mib": None,
            "note": "1,000 written, scaled",
        },
    ]
    trees = work / "batch-trees"
    for i in range(peer_count):
        write_tree(trees / f"{i:05d}", render(spec_from_data(typical_spec(i)), "nocloud"))
    peer_out = work / "batch-peers"
    peer_out.mkdir()
    for tool in ("genisoimage -J -r", "cloud-localds", "xorriso -as mkisofs"):
        n = peer_count if not tool.startswith("xorriso") else max(1, peer_count // 4)
        script = "\n".join(
            shlex.join(peer_commands("nocloud", trees / f"{i:05d}", peer_out / f"{i:05d}.iso")[tool]) for i in range(n)
        )
        script_file = work / "batch-peer.sh"
        script_file.write_text(script + "\n")
        t0 = time.perf_counter()
        subprocess.run(["bash", str(script_file)], check=True, capture_output=True)
        seconds = time.perf_counter() - t0
        rows.append(
            {
                "tool": tool,
                "seeds": n,
                "seconds": seconds,
                "rss_mib": None,
                "note": f"{n:,} specs from a bash loop; 10,000 would take ~{seconds * 10000 / n:,.0f} s",
            }
        )
    return rows


IMPORT_FLOOR = "reference: python3 -c 'import yaml, pycdlib, jsonschema'"


def bench_cold(work: Path, quick: bool) -> list[dict[str, Any]]:
    from configdrive.output import write_tree
    from configdrive.render import render
    from configdrive.spec import spec_from_data

    data = typical_spec()
    spec = work / "cold.json"
    spec.write_text(json.dumps(data))
    tree = work / "cold-tree"
    write_tree(tree, render(spec_from_data(data), "nocloud"))
    # Bytecode cached as after an install (a host may set PYTHONDONTWRITEBYTECODE; then every
    # start compiles configdrive's sources again: the "no bytecode cache" row shows that cost).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        PYTHONPATH=f"{ROOT}{os.pathsep}{sysconfig.get_paths()['purelib']}", PYTHONPYCACHEPREFIX=str(work / "pycache")
    )
    runs = 20 if quick else 100
    build = ["-m", "configdrive", "build", str(spec), "-o", str(work / "cold.iso")]
    # -S skips site's .pth hooks (the same modules come from PYTHONPATH): interpreter start-up
    # on a host whose site-packages runs code at start is then not charged to configdrive.
    cmds = {
        "python3 -m configdrive build (cold)": [sys.executable, *build],
        "python3 -S -m configdrive build (cold, no site hooks)": [sys.executable, "-S", *build],
        "cloud-localds": peer_commands("nocloud", tree, work / "cold-localds.iso")["cloud-localds"],
        "reference: python3 -c pass": [sys.executable, "-c", "pass"],
        "reference: python3 -S -c pass": [sys.executable, "-S", "-c", "pass"],
        "reference: python3 -c 'import jsonschema'": [sys.executable, "-c", "import jsonschema"],
        IMPORT_FLOOR: [sys.executable, "-c", "import yaml, pycdlib, jsonschema"],
    }
    no_cache = dict(env, PYTHONDONTWRITEBYTECODE="1")
    del no_cache["PYTHONPYCACHEPREFIX"]
    runs_of = [(tool, cmd, env) for tool, cmd in cmds.items()]
    runs_of.insert(
        2,
        (
            "python3 -m configdrive build (cold, sources compiled at every start)",
            cmds["python3 -m configdrive build (cold)"],
            no_cache,
        ),
    )
    rows = []
    for tool, cmd, tool_env in runs_of:
        times = hyperfine(cmd, runs, work, tool_env)
        rows.append(
            {
                "tool": tool,
                "median_ms": statistics.median(times) * 1e3,
                "p95_ms": pct(times, 0.95) * 1e3,
                "rss_mib": peak_rss(cmd, work, tool_env) / 2**20,
            }
        )
    return rows


# --- reporting ------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "missing"

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "host": f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs: {cpu}",
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
        "os": out(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "genisoimage": out(["genisoimage", "--version"]).splitlines()[0],
        "xorriso": out(["xorriso", "-version"]).splitlines()[0],
        "cloud-localds": out(["dpkg-query", "-W", "-f", "cloud-image-utils ${Version}", "cloud-image-utils"]),
        "openstacksdk": out([str(VENV_PYTHON), "-c", VERSION_PROBE])
        if VENV_PYTHON.exists()
        else "not installed (run bench/setup.sh)",
        "hyperfine": out(["hyperfine", "--version"]),
        "qemu running at the start (pids)": " ".join(out(["pgrep", "-f", "qemu-system"]).split()) or "none",
    }


VERSION_PROBE = "import importlib.metadata as m; print(m.version('openstacksdk'))"


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def render_report(
    info: dict[str, str],
    workloads: dict[str, list[dict[str, Any]]],
    batch: list[dict[str, Any]],
    cold: list[dict[str, Any]],
    loads: tuple[str, str],
) -> str:
    lines = ["# Benchmark results", "", "Generated by `python3 bench/run.py`; do not edit by hand.", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [
        "- in-process times: median and p95 of single builds in a fresh worker process, GC on; "
        "commands: hyperfine -N (no shell), 3 warm-up runs"
    ]
    lines += [f"- load average (1/5/15 min) at start: {loads[0]}; at end: {loads[1]}", ""]
    for name, rows in workloads.items():
        base = rows[0]
        lines += [
            f"## {name}",
            "",
            "| tool | median ms | p95 ms | runs | ISO bytes | size vs configdrive | time vs configdrive "
            "| peak RSS MiB | identical on rebuild | note |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in rows:
            ident = "yes" if r["identical"] else "no"
            lines.append(
                f"| {r['tool']} | {r['median_ms']:.3f} | {r['p95_ms']:.3f} | {r['runs']} | {r['size']:,} "
                f"| {r['size'] / base['size']:.2f}x | {r['median_ms'] / base['median_ms']:.1f}x "
                f"| {r['rss_mib']:.1f} | {ident} | {r['note']} |"
            )
        stages = base["stages"]
        lines += ["", "configdrive median by stage: " + ", ".join(f"{k} {v:.3f} ms" for k, v in stages.items()), ""]
    lines += [
        "## batch: distinct NoCloud seeds to files",
        "",
        "| tool | seeds | seconds | seeds/s | time per seed ms | peak RSS MiB | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in batch:
        rss = f"{r['rss_mib']:.1f}" if r["rss_mib"] is not None else ""
        lines.append(
            f"| {r['tool']} | {r['seeds']:,} | {r['seconds']:.2f} | {r['seeds'] / r['seconds']:,.0f} "
            f"| {r['seconds'] / r['seeds'] * 1e3:.3f} | {rss} | {r['note']} |"
        )
    lines += [
        "",
        "## cold start: whole process, typical NoCloud seed",
        "",
        "| command | median ms | p95 ms | peak RSS MiB |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {r['tool']} | {r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['rss_mib']:.1f} |" for r in cold]
    lines += ["", "## targets (issue 10)", "", "| target | measured | verdict |", "|---|---:|---|"]
    nc, cd = workloads["nocloud-typical"], workloads["configdrive-full"]

    def peer(rows: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
        return next(r for r in rows if r["tool"].startswith(prefix))

    floor = next(r for r in cold if r["tool"] == IMPORT_FLOOR)
    in_memory = next(r for r in batch if r["tool"].startswith("configdrive (in-process, in memory"))
    durable = batch[0]
    # (what, measured, limit, unit, "min" when the measured value must reach the limit)
    checks = [
        (
            "typical NoCloud seed: genisoimage process / configdrive in-process >= 3x",
            peer(nc, "genisoimage")["median_ms"] / nc[0]["median_ms"],
            3.0,
            "x",
            "min",
        ),
        (
            "typical NoCloud seed: cloud-localds / configdrive in-process >= 15x",
            peer(nc, "cloud-localds")["median_ms"] / nc[0]["median_ms"],
            15.0,
            "x",
            "min",
        ),
        (
            "full config drive: genisoimage process / configdrive in-process >= 2x",
            peer(cd, "genisoimage")["median_ms"] / cd[0]["median_ms"],
            2.0,
            "x",
            "min",
        ),
        ("NoCloud ISO <= 0.35x genisoimage's", nc[0]["size"] / peer(nc, "genisoimage")["size"], 0.35, "x", "max"),
        ("config drive ISO <= 0.35x genisoimage's", cd[0]["size"] / peer(cd, "genisoimage")["size"], 0.35, "x", "max"),
        ("cold `configdrive build` <= 1.2x import floor", cold[0]["median_ms"] / floor["median_ms"], 1.2, "x", "max"),
        (
            "10,000 seeds written durably <= 2x building them in memory",
            durable["seconds"] / in_memory["seconds"],
            2.0,
            "x",
            "max",
        ),
    ]
    for what, value, limit, unit, kind in checks:
        met = value >= limit if kind == "min" else value <= limit
        lines.append(f"| {what} | {value:.3f} {unit} | {'met' if met else 'missed'} |")
    lines.append(
        "| `configdrive watch --once`, 10,000 specs in etcd <= 30 s; restart with nothing changed <= 5 s "
        "| measured by `bench/watch_bench.py` | see [RESULTS-watch.md](RESULTS-watch.md) |"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "--batch-worker":
        return batch_worker(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few runs and a 500-seed batch (smoke test)")
    parser.add_argument("--batch", type=int, default=10000, help="seeds in the batch (default 10,000)")
    parser.add_argument("--batch-peers", type=int, default=400, help="seeds each peer builds in the batch")
    parser.add_argument("--output", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args()
    missing = [t for t in ("genisoimage", "xorriso", "cloud-localds", "hyperfine") if not shutil.which(t)]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run bench/setup.sh")
    start_load = load()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="configdrive-bench-", dir=BENCH) as tmp:
        work = Path(tmp)
        workloads = {}
        for name, (fmt, make) in WORKLOADS.items():
            print(f"{name} ...", file=sys.stderr)
            workloads[name] = bench_workload(name, fmt, make(), work, args.quick)
        print("batch ...", file=sys.stderr)
        count = 500 if args.quick else args.batch
        batch = bench_batch(count, min(count, 50 if args.quick else args.batch_peers), work)
        print("cold start ...", file=sys.stderr)
        cold = bench_cold(work, args.quick)
    report = render_report(info, workloads, batch, cold, (start_load, load()))
    print(report)
    if not args.quick:
        args.output.write_text(report)
        print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
