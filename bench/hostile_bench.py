"""Hostile-input benchmark: the worst time and peak memory any hostile input costs (issue 12's goal:
under 1 s and 100 MB each). Prints a table; writes bench/RESULTS-hostile.md (or --results).

    python bench/hostile_bench.py [--only CATEGORY ...] [--results PATH]

The inputs are the ~330 generated cases of tests/test_hostile.py (alias bombs, nesting, huge
scalars, odd tags, control characters, special files, limits exactly and +1, duplicate and
non-string keys, floats for integers, long names, bad key blobs, library-only data), imported from
there so the benchmark and the suite cannot drift apart. Each command on each case runs in its own
child forked from this process (everything imported, jsonschema's validator built): the library's
``build_seed(...).image`` per format (parse, validate, render, pack the ISO), the CLI's ``build``
per format and ``validate`` (in-process ``configdrive.cli.main``: reads the file, writes the ISO).
Time is the command's CPU time (user + system of its child, from ``wait4``: on a shared machine wall
time mostly measures the neighbours), with its wall time beside it; memory is the child's peak RSS
minus this process's RSS at the fork, which already holds the case's input: what the command costs
beyond the input itself.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import platform
import resource
import select
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from configdrive import cli  # noqa: E402
from configdrive.render import FORMATS  # noqa: E402
from configdrive.seed import build_seed  # noqa: E402
from configdrive.spec import LIMITS, load_spec  # noqa: E402
from configdrive.specschema import _validator  # noqa: E402
from tests.test_hostile import CASES, Case, make_special  # noqa: E402

GOAL_SECONDS, GOAL_MIB = 1.0, 100
CHILD_SECONDS = 120
CHILD_ADDRESS_SPACE = 2 * 1024**3  # a runaway case fails alone instead of swapping the machine


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def in_child(command: Callable[[], object]) -> dict[str, Any]:
    """Run ``command`` in a forked child: its CPU and wall seconds, outcome, and peak RSS over ours (MiB)."""
    read_end, write_end = os.pipe()
    baseline = rss_mib()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))
        start = time.perf_counter()
        try:
            outcome = str(command())
        except Exception as err:  # the outcome is data here; the suite judges it
            outcome = type(err).__name__
        result = {"seconds": time.perf_counter() - start, "outcome": outcome}
        with os.fdopen(write_end, "w") as pipe:
            json.dump(result, pipe)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        ready, _, _ = select.select([pipe], [], [], CHILD_SECONDS)
        data = pipe.read() if ready else ""
    if not ready:
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    result = json.loads(data) if data else {"seconds": float(CHILD_SECONDS), "outcome": f"killed ({status})"}
    result["wall"], result["seconds"] = result["seconds"], usage.ru_utime + usage.ru_stime
    result["mib"] = max(0.0, usage.ru_maxrss / 1024 - baseline)
    return result


def quiet_cli(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return cli.main(argv)


def measure(case: Case, folder: Path) -> list[dict[str, Any]]:
    """Every command on one case, each in its own child."""
    source = case.make()
    commands: list[tuple[str, Callable[[], object]]] = []
    if case.special or isinstance(source, bytes):
        spec = make_special(case.special, folder) if case.special else folder / "spec.yaml"
        if not case.special:
            assert isinstance(source, bytes)
            spec.write_bytes(source)
        out = str(folder / "out.iso")
        commands += [
            (f"cli build {fmt}", functools.partial(quiet_cli, ["build", str(spec), "-o", out, "-f", fmt]))
            for fmt in FORMATS
        ]
        commands.append(("cli validate", lambda: quiet_cli(["validate", str(spec)])))
        if case.special:
            commands.append(("api load_spec", lambda: load_spec(spec)))
    if not case.special:
        commands += [
            (f"api build {fmt}", functools.partial(lambda f: len(build_seed(source, f).image), fmt)) for fmt in FORMATS
        ]
    results = []
    for name, command in commands:
        result = in_child(command)
        result.update(case=case.id, category=case.category, command=name, legal=case.expect is None)
        results.append(result)
        with contextlib.suppress(FileNotFoundError):
            (folder / "out.iso").unlink()
    return results


def table(rows: list[dict[str, Any]], key: str, title: str, count: int = 10) -> list[str]:
    top = sorted(rows, key=lambda r: -r[key])[:count]
    lines = [
        f"**{title}**",
        "",
        "| case | command | CPU time | wall time | memory | outcome |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| `{r['case']}` | {r['command']} | {r['seconds']:.2f} s | {r['wall']:.2f} s | {r['mib']:.0f} MiB "
        f"| {r['outcome']} |"
        for r in top
    ]
    return [*lines, ""]


def report(rows: list[dict[str, Any]], load: tuple[float, float], started: str, elapsed: float) -> str:
    def worst(subset: list[dict[str, Any]], key: str) -> dict[str, Any]:
        return max(subset, key=lambda r: r[key])

    hostile = [r for r in rows if not r["legal"]]
    legal = [r for r in rows if r["legal"]]
    cases = len({r["case"] for r in rows})
    lines = [
        "# Hostile-input benchmark (`python bench/hostile_bench.py`)",
        "",
        f"Measured {started} on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PyYAML {yaml.__version__} ({'with' if getattr(yaml, '__with_libyaml__', False) else 'without'} libyaml). "
        f"{cases} cases from tests/test_hostile.py, {len(rows)} commands, each in its own forked child; "
        f"{elapsed:.0f} s in all. Load average (1 min) before the run {load[0]:.2f}, after {load[1]:.2f}: "
        "other work on the machine inflates wall times (and, less, CPU times).",
        "",
        f"Limits in force: spec {LIMITS['spec_bytes'] // 2**20} MiB, {LIMITS['values']} values (aliases expanded), "
        f"depth {LIMITS['depth']}, payload {LIMITS['payload_bytes'] // 2**20} MiB as written. Memory is the peak "
        "RSS of the command's process over its parent's, which already holds the input (a 64 MiB spec "
        "is 64 MiB before any command runs); under 1 MiB shows as 0 (small objects reuse memory the parent "
        "freed).",
        "",
        "| inputs | commands | worst CPU time | worst memory | goal |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, subset in (("hostile (refused)", hostile), ("legal, at the limits", legal), ("all", rows)):
        slow, big = worst(subset, "seconds"), worst(subset, "mib")
        lines.append(
            f"| {label} | {len(subset)} | {slow['seconds']:.2f} s (`{slow['case']}`, {slow['command']}) | "
            f"{big['mib']:.0f} MiB (`{big['case']}`, {big['command']}) | < {GOAL_SECONDS:.0f} s, "
            f"< {GOAL_MIB} MB |"
        )
    lines += [
        "",
        "Per category (worst command of any case in it):",
        "",
        "| category | cases | worst CPU time | worst memory | over 1 s | over 100 MiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for category in dict.fromkeys(r["category"] for r in rows):
        subset = [r for r in rows if r["category"] == category]
        slow, big = worst(subset, "seconds"), worst(subset, "mib")
        over_time = len({r["case"] for r in subset if r["seconds"] > GOAL_SECONDS})
        over_memory = len({r["case"] for r in subset if r["mib"] > GOAL_MIB})
        lines.append(
            f"| {category} | {len({r['case'] for r in subset})} | {slow['seconds']:.2f} s (`{slow['case']}`) "
            f"| {big['mib']:.0f} MiB (`{big['case']}`) | {over_time} | {over_memory} |"
        )
    lines += [
        "",
        *table(hostile, "seconds", "Slowest hostile commands"),
        *table(hostile, "mib", "Largest hostile commands"),
        *table(legal, "seconds", "Slowest legal commands (specs at the limits)"),
        *table(legal, "mib", "Largest legal commands"),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="categories to run (default: all)")
    parser.add_argument("--results", default=str(ROOT / "bench/RESULTS-hostile.md"))
    args = parser.parse_args()
    _validator()  # built once here: every child starts warm, as a long-running caller would
    cases = [c for c in CASES if not args.only or c.category in args.only]
    load_before = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d")
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for number, case in enumerate(cases, 1):
        with tempfile.TemporaryDirectory(prefix="hostile-bench-") as folder:
            rows += measure(case, Path(folder))
        worst = max(rows[-1:] + [r for r in rows if r["case"] == case.id], key=lambda r: r["seconds"])
        print(
            f"[{number}/{len(cases)}] {case.id}: {worst['seconds']:.2f} s, "
            f"{max(r['mib'] for r in rows if r['case'] == case.id):.0f} MiB",
            file=sys.stderr,
        )
    text = report(rows, (load_before, os.getloadavg()[0]), started, time.perf_counter() - start)
    print(text)
    if not args.only:
        Path(args.results).write_text(text + "\n")


if __name__ == "__main__":
    main()
