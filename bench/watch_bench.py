"""Watcher benchmark: 10,000 specs in a real etcd; initial sync time, change -> ISO-replaced latency
(p50/p99 over 1,000 updates), the watcher's peak RSS. Prints a table; writes bench/RESULTS-watch.md.

    python bench/watch_bench.py [--specs 10000] [--updates 1000] [--format nocloud] [--jobs 2]

Latency is measured from just before the put to etcd until inotify reports the rename of the
VM's ISO into the output folder, one update at a time, as a hypervisor sees a single change.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from configdrive.stores import open_store  # noqa: E402
from configdrive.stores.directory import IN_MOVED_TO, Inotify  # noqa: E402
from tests.watch.servers import EtcdServer, WatcherProcess, wait_for  # noqa: E402

TEMPLATE = (ROOT / "fixtures/specs/valid/example.yaml").read_text()


def spec_for(vm_id: str, version: int) -> bytes:
    """The example spec (two NICs, keys, cloud-config, vendor data) renamed for ``vm_id``."""
    text = TEMPLATE.replace("iid-example-0001", f"iid-{vm_id}")
    text = re.sub(r"(?m)^hostname: web1$", f"hostname: {vm_id}-v{version}", text)
    text = text.replace("fqdn: web1.example.org", f"fqdn: {vm_id}-v{version}.example.org")
    return text.encode()


def rss_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=1_000)
    parser.add_argument("--format", default="nocloud", choices=("nocloud", "configdrive"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--results", default=str(ROOT / "bench/RESULTS-watch.md"))
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="configdrive-watch-bench-"))
    etcd = EtcdServer(work / "etcd").start()
    url, out = f"{etcd.url}/bench/host1/", work / "out"
    out.mkdir()
    store = open_store(url)
    vms = [f"vm{i:05d}" for i in range(args.specs)]
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda vm: store.put(vm, spec_for(vm, 0)), vms))
        load_s = time.monotonic() - started
        print(f"loaded {len(vms)} specs into etcd in {load_s:.1f} s", file=sys.stderr)

        # Initial sync: from launching the process to its "initial sync done" log line.
        watcher = WatcherProcess(url, out, work / "watch.log", "--format", args.format,
                                 "--jobs", str(args.jobs))
        peak_total = 0
        sampling = threading.Event()

        def sample() -> None:
            nonlocal peak_total
            while not sampling.is_set():
                if watcher.process is not None:
                    pids = [watcher.process.pid, *children(watcher.process.pid)]
                    peak_total = max(peak_total, sum(rss_kib(p, "VmRSS") for p in pids))
                time.sleep(0.05)

        started = time.monotonic()
        watcher.start()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        wait_for(lambda: "initial sync done" in watcher.log_text(), 600, "the initial sync", 0.01)
        sync_s = time.monotonic() - started
        logged = re.search(r"initial sync done: \d+ specs in ([\d.]+) s", watcher.log_text())
        sync_in_process_s = float(logged.group(1)) if logged else float("nan")
        isos = sum(1 for name in os.listdir(out) if name.endswith(".iso"))
        print(f"initial sync: {sync_s:.1f} s, {isos} ISOs", file=sys.stderr)

        # Latency: one update at a time, timed until the rename of that VM's ISO lands.
        inotify = Inotify.open()
        assert inotify is not None, "the benchmark needs inotify"
        inotify.add_watch(out, IN_MOVED_TO)
        latencies = []
        for n in range(args.updates):
            vm = vms[(n * 7919) % len(vms)]
            name = f"{vm}.iso"
            t0 = time.perf_counter()
            store.put(vm, spec_for(vm, n + 1))
            while not any(mask & IN_MOVED_TO and ev == name for mask, ev in inotify.read(5.0)):
                if time.perf_counter() - t0 > 5:
                    raise TimeoutError(f"{vm}: no new ISO within 5 s")
            latencies.append((time.perf_counter() - t0) * 1000)
        inotify.close()
        sampling.set()
        peak_main = rss_kib(watcher.process.pid, "VmHWM") if watcher.process else 0
        watcher.stop()
    finally:
        store.close()
        etcd.stop()

    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    rows = [
        ("specs in etcd", f"{args.specs}", ""),
        ("format / worker processes", f"{args.format} / {args.jobs}", ""),
        ("initial sync, process start -> all ISOs written", f"{sync_s:.1f} s", "< 15 s"),
        ("initial sync, as logged by the watcher", f"{sync_in_process_s:.1f} s", ""),
        ("change -> ISO replaced, p50", f"{p50:.1f} ms", ""),
        ("change -> ISO replaced, p99", f"{p99:.1f} ms", "< 50 ms"),
        ("change -> ISO replaced, max", f"{latencies[-1]:.1f} ms", ""),
        ("peak RSS, watcher process (VmHWM)", f"{peak_main / 1024:.0f} MiB", "< 150 MB"),
        ("peak RSS, watcher + sync workers (sampled)", f"{peak_total / 1024:.0f} MiB", ""),
    ]
    width = max(len(r[0]) for r in rows)
    for what, value, goal in rows:
        print(f"{what:<{width}}  {value:>12}  {goal}")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    table = ["| measure | value | goal |", "| --- | --- | --- |"]
    table += [f"| {what} | {value} | {goal} |" for what, value, goal in rows]
    Path(args.results).write_text(
        "# Watcher benchmark (`python bench/watch_bench.py`)\n\n"
        f"Measured {time.strftime('%Y-%m-%d')} on {machine}, etcd 3.4 on loopback, "
        f"{args.updates} sequential updates. Load average (1 min) before the run "
        f"{load_before:.2f}, after {os.getloadavg()[0]:.2f}: other work on the machine slows the "
        "sync in proportion.\n\n" + "\n".join(table) + "\n")
    print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
