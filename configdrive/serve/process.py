"""Running ``configdrive serve``: worker processes, the store follower's thread, signals.

One process serves metadata and, given ``--out-dir`` (the ``watch`` options), also keeps the
seed images up to date: one store follower feeds both sinks. With ``--workers N`` the TCP
sockets are bound first and N processes answer on them, each with its own follower and tables
and one shared IMDSv2 token key.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import resource
import signal
import socket
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from configdrive.errors import ConfigDriveError
from configdrive.serve.tokens import TokenIssuer

log = logging.getLogger("configdrive.serve")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def serve(args: argparse.Namespace) -> int:
    """``configdrive serve``; the exit code."""
    from configdrive.serve.listeners import bind_tcp

    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.listen and not args.socket_dir:
        print("configdrive: error: serve needs --listen or --socket-dir (or both)", file=sys.stderr)
        return EXIT_USAGE
    raise_open_file_limit()
    # Bound before any worker starts, with one token key: every worker answers on the same
    # sockets, and a token issued by one is good at another (cloud-init connects anew each time).
    sockets = [bind_tcp(value) for value in args.listen]
    tokens = TokenIssuer()
    workers = [_fork_worker(args, sockets, tokens, n) for n in range(1, max(1, args.workers))]
    try:
        return _run(_serve(args, sockets, tokens, workers))
    finally:
        for pid in workers:
            _stop_worker(pid)


def _fork_worker(args: argparse.Namespace, sockets: list[socket.socket], tokens: TokenIssuer, n: int) -> int:
    """Worker ``n``: the same service on the shared sockets, without the socket folder."""
    pid = os.fork()
    if pid:
        return pid
    code = EXIT_FAILURE
    try:
        _die_with_parent()
        worker_args = argparse.Namespace(**{**vars(args), "socket_dir": None, "out_dir": None})
        code = _run(_serve(worker_args, sockets, tokens, []))
    finally:
        os._exit(code)


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the first process dies, even by kill -9."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:
        os._exit(EXIT_FAILURE)


def _stop_worker(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _run(main: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run``, on uvloop when it is installed (1.5x the requests per second)."""
    try:
        uvloop: Any = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.run(main)
    if sys.version_info < (3, 11):  # no asyncio.Runner: the standard loop
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result: int = runner.run(main)
    return result


async def _serve(
    args: argparse.Namespace, sockets: list[socket.socket], tokens: TokenIssuer, workers: list[int]
) -> int:
    from configdrive.serve.service import MetadataService
    from configdrive.sinks.http import HttpSink
    from configdrive.stores import open_store

    loop = asyncio.get_running_loop()
    service = MetadataService(
        sockets, args.socket_dir, args.leases, access_log=args.access_log, tokens=tokens, accept_after_sync=True
    )
    store = open_store(args.source)
    try:
        sink = HttpSink(service.tables, loop.call_soon_threadsafe, service.full_set)
        follower, hangup = _follower(args, store, sink)
        await service.start()
    except BaseException:
        await service.stop()
        store.close()
        raise

    stopped = asyncio.Event()
    outcome: list[BaseException | None] = []

    def follow() -> None:
        try:
            follower.run()
            outcome.append(None)
        except BaseException as err:  # reported on the loop: the service stops with exit 1
            outcome.append(err)
        finally:
            loop.call_soon_threadsafe(stopped.set)

    def on_hangup() -> None:
        service.reload()
        hangup()
        follower.request_resync()
        for pid in workers:
            os.kill(pid, signal.SIGHUP)

    async def watch_workers() -> None:
        while workers:
            await asyncio.sleep(1)
            for pid in list(workers):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    workers.remove(pid)
                    outcome.append(RuntimeError(f"worker {pid} exited ({status})"))
                    stopped.set()

    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    thread = threading.Thread(target=follow, name="follower", daemon=True)
    thread.start()
    watcher = loop.create_task(watch_workers())
    try:
        await stopped.wait()
    finally:
        watcher.cancel()
        follower.request_stop()
        await loop.run_in_executor(None, thread.join)
        await service.stop()
        store.close()
    error = next((e for e in outcome if e is not None), None)
    if error is not None:
        log.error("stopping: %s", error)
        return EXIT_FAILURE
    return EXIT_OK


def _follower(args: argparse.Namespace, store: Any, sink: Any) -> tuple[Any, Callable[[], None]]:
    """The follower feeding ``sink`` and, with ``--out-dir``, the seed images; and what SIGHUP
    re-reads for them (the QMP map)."""
    from configdrive.sinks import SeedBuilder, seed_folder
    from configdrive.watch import Follower

    if args.out_dir is None:
        # No image to pack; the sink builds the other served format from the same spec. The
        # follower keeps each VM's last seed: NoCloud's 4 files cost a third of config-2's 46.
        return Follower(store, SeedBuilder("nocloud", pack=False), [sink], jobs=args.jobs), lambda: None
    from configdrive.cli import _qmp_map

    folder = seed_folder(
        store,
        args.out_dir,
        args.format or "nocloud",
        keep_deleted=args.keep_deleted,
        qmp_targets=_qmp_map(args.qmp_map),
        qmp_timeout=args.qmp_timeout,
        jobs=args.jobs,
    )
    folder.follower.sinks.append(sink)

    def reread_qmp_map() -> None:
        if args.qmp_map:
            try:
                folder.swaps.targets = _qmp_map(args.qmp_map)
            except ConfigDriveError as err:
                log.error("keeping the old QMP map: %s", err)

    return folder.follower, reread_qmp_map


def raise_open_file_limit() -> None:
    """One socket per VM plus its connections: raise the soft limit on open files to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
