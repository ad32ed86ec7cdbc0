"""Metadata service benchmark: throughput against nginx, a boot storm, RSS with 10,000 VMs.
Prints a table; writes bench/RESULTS-serve.md.

    python bench/serve_bench.py [--storm-vms 1000] [--rss-vms 10000] [--duration 10] [--rounds 3]

- Throughput: ``wrk -t1 -c200`` (Debian's wrk) fetching ``/openstack/latest/meta_data.json``
  over keep-alive connections from ``configdrive serve --listen 127.0.0.1:PORT`` (the VM found
  by source address through a leases file) and from Debian's nginx serving the same file from
  disk (``worker_processes auto``, access log off). Rounds alternate between the two; medians.
- Boot storm: N VMs at once, each doing cloud-init's OpenStack datasource request sequence
  (``/openstack`` twice, the five files of 2018-08-27, ``/openstack/content/NNNN``, then the
  EC2 tree crawled from ``/latest/meta-data/`` and ``/latest/user-data``), one connection per
  request as cloud-init's ``readurl`` makes them, each VM from its own loopback address. Every
  VM checks it got its own instance's ``uuid``.
- RSS: ``serve`` with N VMs in a folder store, a socket per VM and one listener, after its
  initial sync (VmRSS and VmHWM of the serve process; sync workers excluded).

Needs root-free loopback only; installs nothing (``apt-get install wrk nginx-light`` first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from configdrive.output import write_tree  # noqa: E402
from configdrive.seed import build_seed  # noqa: E402

TEMPLATE = (ROOT / "fixtures/specs/valid/example.yaml").read_text()
FILES = 'files:\n  - {path: /etc/motd, content: "hello from the metadata service\\n"}\n'
META = "/openstack/latest/meta_data.json"
OS_VERSION = "2018-08-27"
OS_FILES = ("meta_data.json", "user_data", "vendor_data.json", "vendor_data2.json", "network_data.json")


def spec_for(vm_id: str) -> str:
    """The example spec (two NICs, two keys, cloud-config, vendor data) plus one file, as ``vm_id``."""
    text = TEMPLATE.replace("iid-example-0001", f"iid-{vm_id}")
    text = re.sub(r"(?m)^hostname: web1$", f"hostname: {vm_id}", text)
    text = text.replace("fqdn: web1.example.org", f"fqdn: {vm_id}.example.org")
    # Distinct MACs and addresses per VM, so no two specs claim the same one.
    n = int(vm_id[2:])
    text = text.replace("52:54:00:12:34:01", f"52:54:01:{n >> 8 & 255:02x}:{n & 255:02x}:01")
    text = text.replace("52:54:00:12:34:02", f"52:54:01:{n >> 8 & 255:02x}:{n & 255:02x}:02")
    text = text.replace("2001:db8:1::10/64", f"2001:db8:1::{n:x}:10/64")
    return text + FILES


def source_of(index: int) -> str:
    """A loopback source address per VM: 127.1.0.1, 127.1.0.2, ..."""
    return f"127.1.{index // 250}.{index % 250 + 1}"


def kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


# --- the service and nginx as processes -----------------------------------------------------------


class Service:
    def __init__(
        self,
        work: Path,
        specs: dict[str, str],
        leases: dict[str, str],
        port: int,
        socket_dir: bool = False,
        jobs: int = 1,
        workers: int = 1,
    ) -> None:
        self.work = work
        (work / "specs").mkdir(parents=True)
        for vm_id, text in specs.items():
            (work / "specs" / f"{vm_id}.yaml").write_text(text)
        (work / "leases.yaml").write_text("".join(f"{k}: {v}\n" for k, v in leases.items()))
        cmd = [
            sys.executable,
            "-m",
            "configdrive",
            "serve",
            "--source",
            f"dir:{work / 'specs'}",
            "--listen",
            f"127.0.0.1:{port}",
            "--leases",
            str(work / "leases.yaml"),
            "--no-access-log",
            "--jobs",
            str(jobs),
            "--workers",
            str(workers),
        ]
        if socket_dir:
            cmd += ["--socket-dir", str(work / "socks")]
        self.log = work / "serve.log"
        self.started = time.monotonic()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                cmd, cwd=ROOT, stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(ROOT)}
            )

    def wait_synced(self, timeout: float = 900) -> float:
        """Seconds from process start until the follower logged its initial sync done."""
        deadline = time.monotonic() + timeout
        while "initial sync done" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("serve did not sync: " + self.log.read_text()[-2000:])
            time.sleep(0.1)
        return time.monotonic() - self.started

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Nginx:
    def __init__(self, work: Path, root: Path, port: int) -> None:
        work.mkdir(parents=True, exist_ok=True)
        conf = work / "nginx.conf"
        # write_tree makes files 0600: as root, nginx's workers must stay root to read them.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf.write_text(f"""{user}worker_processes auto;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
        self.process = subprocess.Popen(
            ["nginx", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def wait_http(port: int, path: str, timeout: float = 60, statuses: tuple[int, ...] = (200,)) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status in statuses:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answers {path} on port {port}")


# --- throughput -----------------------------------------------------------------------------------


def wrk(port: int, duration: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", f"http://127.0.0.1:{port}{META}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    assert p99 is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale, "non2xx": float(errors.group(1)) if errors else 0.0}


def throughput(work: Path, duration: int, rounds: int, connections: int) -> dict[str, object]:
    spec = spec_for("vm00000")
    servers = {
        "serve": Service(work / "tp-serve1", {"vm00000": spec}, {"vm00000": "127.0.0.1"}, 18180),
        "serve --workers 2": Service(work / "tp-serve2", {"vm00000": spec}, {"vm00000": "127.0.0.1"}, 18184, workers=2),
    }
    www = work / "tp-www"
    write_tree(www, build_seed(spec.encode(), "configdrive").tree)
    nginx = Nginx(work / "tp-nginx", www, 18181)
    ports = {"serve": 18180, "serve --workers 2": 18184, "nginx": 18181}
    try:
        for port in ports.values():
            wait_http(port, META)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
        for _ in range(rounds):
            for name, port in ports.items():
                results[name].append(wrk(port, duration, connections))
        hwm = kib(servers["serve"].process.pid, "VmHWM")
    finally:
        for server in servers.values():
            server.stop()
        nginx.stop()
    summary: dict[str, object] = {"runs": results, "serve_hwm_kib": hwm}
    for name, runs in results.items():
        summary[f"{name}_rps"] = statistics.median(r["rps"] for r in runs)
        summary[f"{name}_p99_ms"] = statistics.median(r["p99_ms"] for r in runs)
        summary[f"{name}_non2xx"] = sum(r["non2xx"] for r in runs)
    return summary


# --- boot storm -----------------------------------------------------------------------------------


class Client:
    """cloud-init's requests as its ``readurl`` makes them: a new connection each, HTTP/1.1."""

    def __init__(self, port: int, source: str) -> None:
        self.port, self.source, self.requests = port, source, 0

    async def get(self, path: str) -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(self.source, 0))
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: Cloud-Init/22.4\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n".encode()
        )
        raw = await reader.read()
        writer.close()
        self.requests += 1
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    async def ok(self, path: str) -> bytes:
        status, body = await self.get(path)
        if status != 200:
            raise RuntimeError(f"{self.source} {path}: {status}")
        return body

    async def crawl(self, url: str) -> None:
        """cloud-init's MetadataMaterializer: a listing, then its folders and leaves."""
        for line in (await self.ok(url)).decode().splitlines():
            if line.endswith("/"):
                await self.crawl(url + line)
            elif "=" in line:
                await self.ok(f"{url}{line.split('=', 1)[0]}/openssh-key")
            else:
                await self.ok(url + line)


async def boot(port: int, source: str, uuid: str) -> int:
    client = Client(port, source)
    await client.ok("/openstack")
    versions = (await client.ok("/openstack")).decode().split()
    assert OS_VERSION in versions
    meta = {}
    for name in OS_FILES:
        body = await client.ok(f"/openstack/{OS_VERSION}/{name}")
        if name == "meta_data.json":
            meta = json.loads(body)
    if meta.get("uuid") != uuid:
        raise RuntimeError(f"{source}: got another VM's metadata")
    for item in meta.get("files", []):
        await client.ok("/openstack" + item["content_path"])
    await client.crawl("/latest/meta-data/")
    await client.ok("/latest/user-data")
    return client.requests


def _run_client(main: Any) -> Any:
    """The client side on uvloop too when installed: the client, not the service, is the
    bottleneck otherwise."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def storm(work: Path, vms: int, workers: int) -> dict[str, object]:
    ids = [f"vm{i:05d}" for i in range(vms)]
    specs = {vm: spec_for(vm) for vm in ids}
    uuids = {vm: json.loads(build_seed(specs[vm].encode(), "configdrive").tree[META[1:]])["uuid"] for vm in ids}
    service = Service(
        work / "storm", specs, {vm: source_of(i) for i, vm in enumerate(ids)}, 18182, jobs=2, workers=workers
    )
    try:
        sync_s = service.wait_synced()
        wait_http(18182, META, statuses=(404,))  # the bench's own address is no VM's

        async def all_vms() -> tuple[float, list[int]]:
            started = time.monotonic()
            counts = await asyncio.gather(*(boot(18182, source_of(i), uuids[vm]) for i, vm in enumerate(ids)))
            return time.monotonic() - started, list(counts)

        try:
            elapsed, counts = _run_client(all_vms())
        except Exception as err:
            raise RuntimeError(f"boot storm failed: {err}") from err
        hwm = kib(service.process.pid, "VmHWM")
    finally:
        service.stop()
    return {
        "vms": vms,
        "sync_s": sync_s,
        "elapsed_s": elapsed,
        "requests": sum(counts),
        "per_vm": counts[0],
        "serve_hwm_kib": hwm,
        "workers": workers,
    }


# --- RSS ----------------------------------------------------------------------------------------------


def rss(work: Path, vms: int, jobs: int) -> dict[str, object]:
    ids = [f"vm{i:05d}" for i in range(vms)]
    service = Service(work / "rss", {vm: spec_for(vm) for vm in ids}, {}, 18183, socket_dir=True, jobs=jobs)
    try:
        sync_s = service.wait_synced()
        sockets = work / "rss" / "socks"
        deadline = time.monotonic() + 120
        while len(os.listdir(sockets)) < vms and time.monotonic() < deadline:
            time.sleep(0.2)
        count = len(os.listdir(sockets))
        time.sleep(1.0)
        pid = service.process.pid
        result = {
            "vms": vms,
            "sync_s": sync_s,
            "sockets": count,
            "rss_kib": kib(pid, "VmRSS"),
            "hwm_kib": kib(pid, "VmHWM"),
        }
    finally:
        service.stop()
    return result


# --- report ------------------------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    tp: dict[str, object],
    st: dict[str, object],
    rs: dict[str, object],
    load: tuple[float, float],
) -> str:
    serve_rps, nginx_rps = float(tp["serve_rps"]), float(tp["nginx_rps"])  # type: ignore[arg-type]
    serve2_rps = float(tp["serve --workers 2_rps"])  # type: ignore[arg-type]
    rows = [
        ("throughput, configdrive serve, 1 process (median of rounds)", f"{serve_rps:,.0f} req/s", ""),
        ("throughput, configdrive serve --workers 2", f"{serve2_rps:,.0f} req/s", ""),
        ("throughput, nginx serving the same file (worker_processes auto)", f"{nginx_rps:,.0f} req/s", ""),
        ("throughput ratio serve / nginx, 1 process", f"{serve_rps / nginx_rps:.2f}", ">= 0.5"),
        ("throughput ratio serve --workers 2 / nginx", f"{serve2_rps / nginx_rps:.2f}", ">= 0.5"),
        (
            "p99 latency, serve / serve --workers 2 / nginx",
            f"{tp['serve_p99_ms']:.1f} / {tp['serve --workers 2_p99_ms']:.1f} / {tp['nginx_p99_ms']:.1f} ms",
            "<= 20 ms",
        ),
        (
            "non-2xx answers (serve, serve --workers 2, nginx)",
            f"{tp['serve_non2xx']:.0f} / {tp['serve --workers 2_non2xx']:.0f} / {tp['nginx_non2xx']:.0f}",
            "0",
        ),
        (
            f"boot storm: {st['vms']} VMs, cloud-init's OpenStack sequence, all at once ({st['workers']} process(es))",
            f"{st['elapsed_s']:.1f} s",
            "<= 10 s",
        ),
        ("boot storm: requests (per VM)", f"{st['requests']:,} ({st['per_vm']})", ""),
        ("boot storm: initial sync of its store", f"{st['sync_s']:.1f} s", ""),
        (
            f"RSS with {rs['vms']:,} VMs after the initial sync (VmRSS)",
            f"{int(rs['rss_kib']) / 1024:.0f} MiB",  # type: ignore[call-overload]
            "<= 300 MB",
        ),
        ("peak RSS of the serve process (VmHWM)", f"{int(rs['hwm_kib']) / 1024:.0f} MiB", ""),  # type: ignore[call-overload]
        ("sockets in --socket-dir", f"{rs['sockets']:,}", ""),
        (f"initial sync of {rs['vms']:,} specs ({args.jobs} worker processes)", f"{rs['sync_s']:.1f} s", ""),
    ]
    runs = tp["runs"]
    lines = [
        "# Metadata service benchmark (`python bench/serve_bench.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {_loop()}, wrk {args.connections} keep-alive connections for "
        f"{args.duration} s x {args.rounds} rounds per server. Load average (1 min) before the run "
        f"{load[0]:.2f}, after {load[1]:.2f}: other work on the machine lowers every figure. One run; "
        "ratios, not absolutes, are the point.",
        "",
        "| measure | value | goal |",
        "| --- | --- | --- |",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "Rounds (req/s, p99 ms): "
        + "; ".join(
            f"{name} " + ", ".join(f"{r['rps']:,.0f}/{r['p99_ms']:.1f}" for r in rs_)  # type: ignore[attr-defined]
            for name, rs_ in runs.items()
        )
        + ".",  # type: ignore[attr-defined]
        "",
        "How: see the docstring of `bench/serve_bench.py`. nginx runs `worker_processes auto` (one per core);",
        "`serve` is one process (one event loop), or two with `--workers 2`; all share the two cores with wrk.",
        "",
    ]
    return "\n".join(lines)


def _loop() -> str:
    try:
        import uvloop  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return "asyncio's own event loop (uvloop not installed)"
    return "uvloop event loop"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storm-vms", type=int, default=1000)
    parser.add_argument("--rss-vms", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workers", type=int, default=1, help="serve processes for the boot storm")
    parser.add_argument("--results", default=str(ROOT / "bench/RESULTS-serve.md"))
    parser.add_argument(
        "--only", choices=("throughput", "storm", "rss"), help="run one part and print it (writes no results file)"
    )
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            print(f"needs {tool}: apt-get install wrk nginx-light", file=sys.stderr)
            return 2
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="configdrive-serve-bench-"))
    if args.only:
        try:
            part = {
                "throughput": lambda: throughput(work, args.duration, args.rounds, args.connections),
                "storm": lambda: storm(work, args.storm_vms, args.workers),
                "rss": lambda: rss(work, args.rss_vms, args.jobs),
            }[args.only]()
            print(json.dumps({k: v for k, v in part.items() if k != "runs"}))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    try:
        tp = throughput(work, args.duration, args.rounds, args.connections)
        print(json.dumps({k: v for k, v in tp.items() if k != "runs"}), file=sys.stderr)
        st = storm(work, args.storm_vms, args.workers)
        print(json.dumps(st), file=sys.stderr)
        rs = rss(work, args.rss_vms, args.jobs)
        print(json.dumps(rs), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(args, tp, st, rs, (load_before, os.getloadavg()[0]))
    print(text)
    Path(args.results).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
