"""The ``configdrive`` command line: argparse, printing problems, exit codes. No logic of its own.

Exit codes: 0 success, 2 invalid input (every problem printed, nothing written), 1 other failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from configdrive.errors import ConfigDriveError, InputError, SpecError, UnknownFormatError
from configdrive.render import CHECKED_BY_DEFAULT, DEFAULT_FORMAT, FORMATS
from configdrive.storeurls import URL_HELP

EXIT_OK, EXIT_FAILURE, EXIT_INVALID = 0, 1, 2
FORMAT_HELP = "; ".join(f"{f.name}: {f.help}" for f in FORMATS.values()) + f" (default: {DEFAULT_FORMAT})"

EXAMPLES = """\
examples:
  configdrive build vm.yaml -o seed.iso                      # NoCloud seed (label cidata)
  configdrive build vm.yaml -o seed.iso --format configdrive # OpenStack config drive (config-2)
  configdrive build - -o seed.iso < vm.json                  # spec on standard input
  configdrive render vm.yaml --format configdrive --out-dir tree/
  configdrive validate specs/*.yaml --json
  configdrive inspect seed.iso
  configdrive diff old.yaml new.yaml --json                  # what cloud-init will apply
  configdrive schema > vmspec.schema.json
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except SpecError as err:
        _print_problems(err, getattr(args, "spec", None))
        return EXIT_INVALID
    except (InputError, UnknownFormatError) as err:
        print(f"configdrive: error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except ConfigDriveError as err:
        print(f"configdrive: error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): end quietly with the status of a command SIGPIPE ended;
        # stdout goes to /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="configdrive",
        description="Build cloud-init seed ISOs (NoCloud, OpenStack config drive) from one validated VM spec.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name, help=help_, description=help_, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        p.set_defaults(command=func)
        return p

    p = command("build", _build, "build a seed ISO from a spec")
    p.add_argument("spec", help="spec file (YAML or JSON), or - for standard input")
    p.add_argument("-o", "--output", required=True, help="ISO file to write (atomically, mode 0600)")
    _format_option(p)

    p = command("render", _render, "write the seed's files to a folder instead of an ISO")
    p.add_argument("spec", help="spec file (YAML or JSON), or - for standard input")
    _format_option(p)
    p.add_argument("--out-dir", required=True, help="folder to write into (created if missing)")

    p = command("validate", _validate, "check specs; print every problem with its field path")
    p.add_argument("specs", nargs="+", metavar="spec", help="spec files")
    _formats_option(p, "also check that this format can express the spec (repeatable; default: none)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("inspect", _inspect, "show a seed ISO's label, files and parsed metadata as JSON")
    p.add_argument("iso", help="ISO file (ours or made by genisoimage, cloud-localds, Nova)")
    p.add_argument("--contents", action="store_true", help="include every file's text")

    p = command(
        "diff",
        _diff,
        "say what cloud-init will do at the next boot with the differences between two seeds (exit 0: none, 1: some)",
    )
    p.add_argument("old", help="spec file, seed ISO, or (with --store) a VM id")
    p.add_argument("new", help="spec file, seed ISO, or (with --store) a VM id")
    p.add_argument(
        "-f",
        "--format",
        choices=tuple(FORMATS),
        help=f"the format to compare specs in (default: an ISO side's format, else {DEFAULT_FORMAT})",
    )
    p.add_argument("--store", metavar="URL", help="read sides that are not files from this spec store")
    p.add_argument("--json", action="store_true", help="a list of {field, applies, why} objects")

    command("schema", _schema, "print the VM spec's JSON Schema")
    _store_commands(command)
    return parser


def _format_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", choices=tuple(FORMATS), default=DEFAULT_FORMAT, help=FORMAT_HELP)


def _formats_option(p: argparse.ArgumentParser, help_: str) -> None:
    p.add_argument("-f", "--format", choices=tuple(FORMATS), action="append", help=help_)


def _read_spec(source: str) -> bytes:
    """The spec's bytes from a file or, for ``-``, standard input (bounded, regular files only)."""
    from configdrive.inputs import read_regular_file, read_stream

    return read_stream(sys.stdin.buffer) if source == "-" else read_regular_file(source)


def _origin(source: str) -> str:
    return "<stdin>" if source == "-" else source


def _build(args: argparse.Namespace) -> int:
    from configdrive.errors import OutputError
    from configdrive.output import check_target, write_file
    from configdrive.seed import build_seed

    try:
        check_target(args.output)  # a device, FIFO, folder or symlink named by -o is bad input
    except OutputError as err:
        print(f"configdrive: error: {err}", file=sys.stderr)
        return EXIT_INVALID
    seed = build_seed(_read_spec(args.spec), args.format, _origin(args.spec))
    write_file(args.output, seed.image)
    print(f"wrote {args.output} ({args.format}, {len(seed.image)} bytes)", file=sys.stderr)
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    from configdrive.output import write_tree
    from configdrive.seed import build_seed

    tree = build_seed(_read_spec(args.spec), args.format, _origin(args.spec)).tree
    write_tree(args.out_dir, tree)
    print(f"wrote {len(tree)} files below {args.out_dir} ({args.format})", file=sys.stderr)
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from configdrive.seed import check_spec

    results = []
    for source in args.specs:
        problems: list[Any] = []
        try:
            check_spec(_read_spec(source), args.format or (), _origin(source))
        except SpecError as err:
            problems = list(err.problems)
        except InputError as err:
            problems = [{"path": "", "message": str(err)}]
        results.append(
            {
                "spec": source,
                "valid": not problems,
                "problems": [p if isinstance(p, dict) else p.as_dict() for p in problems],
            }
        )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if result["valid"]:
                print(f"{result['spec']}: valid")
            for problem in result["problems"]:
                print(f"{result['spec']}: {problem['path'] or '<spec>'}: {problem['message']}")
    return EXIT_OK if all(r["valid"] for r in results) else EXIT_INVALID


def _inspect(args: argparse.Namespace) -> int:
    from configdrive.iso import read_iso
    from configdrive.render import format_of_label

    image = read_iso(args.iso)
    fmt = format_of_label(image.label)
    report: dict[str, Any] = {
        "label": image.label,
        "format": fmt.name if fmt else "unknown",
        "files": {path: len(data) for path, data in image.files.items()},
        "metadata": _parsed_metadata(image.files, fmt.metadata_files if fmt else ()),
    }
    if args.contents:
        report["contents"] = {p: d.decode("utf-8", "replace") for p, d in image.files.items()}
    print(json.dumps(report, indent=2, sort_keys=False))
    return EXIT_OK


def _parsed_metadata(files: dict[str, bytes], names: Sequence[str]) -> dict[str, Any]:
    """The format's metadata files, parsed (YAML, a superset of JSON)."""
    import yaml

    parsed: dict[str, Any] = {}
    for name in names:
        if name in files:
            try:
                parsed[name] = yaml.safe_load(files[name])
            except yaml.YAMLError as err:
                parsed[name] = {"error": f"unparsable: {err}"}
    return parsed


def _diff(args: argparse.Namespace) -> int:
    from configdrive.changes import compare
    from configdrive.iso import looks_like_iso, read_iso
    from configdrive.render import format_of_label, get_format
    from configdrive.seed import build_seed

    images = {side: read_iso(side) for side in (args.old, args.new) if looks_like_iso(side)}
    formats = {format_of_label(image.label) for image in images.values()}
    if None in formats or len(formats) > 1 or (args.format and formats and formats != {get_format(args.format)}):
        labels = ", ".join(sorted({image.label for image in images.values()}))
        print(f"configdrive: error: cannot compare seeds of different or unknown formats ({labels})", file=sys.stderr)
        return EXIT_INVALID
    fmt = next((f for f in formats if f is not None), None) or get_format(args.format or DEFAULT_FORMAT)
    if fmt.fields is None:
        print(f"configdrive: error: {fmt.name} seeds cannot be compared", file=sys.stderr)
        return EXIT_INVALID

    def tree(side: str) -> Any:
        if side in images:
            return images[side].files
        if args.store and not os.path.lexists(side):
            return build_seed(_stored_spec(args.store, side), fmt.name, f"{args.store} {side}").tree
        return build_seed(_read_spec(side), fmt.name, _origin(side)).tree

    found = compare(fmt, tree(args.old), tree(args.new))
    if args.json:
        print(json.dumps([v.as_dict() for v in found], indent=2))
    else:
        for v in found:
            print(f"{v.field}: {v.applies}: {v.why}")
    return EXIT_FAILURE if found else EXIT_OK


def _stored_spec(url: str, vm_id: str) -> bytes:
    from configdrive.stores import open_store

    store = open_store(url)
    try:
        record = store.get(vm_id)
    finally:
        store.close()
    if record is None:
        raise InputError(f"no spec in {url}", vm_id)
    return record.raw


def _schema(args: argparse.Namespace) -> int:
    from configdrive.specschema import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK


def _print_problems(err: SpecError, source: str | None) -> None:
    where = err.source or source or "spec"
    print(f"configdrive: {where}: invalid spec, {len(err.problems)} problem(s):", file=sys.stderr)
    for problem in err.problems:
        print(f"  {problem}", file=sys.stderr)


# --- spec stores and the watcher ------------------------------------------------------------

STORE_HELP = URL_HELP


def _store_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("watch", _watch, "keep one seed ISO per VM in step with a spec store")
    p.add_argument("--source", required=True, metavar="URL", help=STORE_HELP)
    p.add_argument("--out-dir", required=True, help="folder of <vm-id>.iso (owned by the watcher)")
    _format_option(p)
    p.add_argument("--once", action="store_true", help="one full sync, then exit")
    p.add_argument("--keep-deleted", action="store_true", help="keep the ISO of a deleted spec")
    p.add_argument(
        "--qmp-map",
        metavar="FILE",
        help="YAML/JSON {vm-id: {socket: PATH, device: QDEV-ID, media: cdrom|disk}}: hot-swap "
        "the medium of these running VMs after each rebuild (re-read on SIGHUP)",
    )
    p.add_argument(
        "--qmp-timeout",
        type=float,
        metavar="SECONDS",
        help="give up on a QMP connect or command after this long and retry later (default: 3)",
    )
    p.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes for a large sync (default: CPU count)"
    )
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    p = command("put", _put, "validate a spec and write it to a store (nothing written if invalid)")
    p.add_argument("--store", required=True, metavar="URL", help=STORE_HELP)
    p.add_argument("vm_id", help="VM id: the store key and the ISO's file name")
    p.add_argument("spec", help="spec file (YAML or JSON), or - for standard input")
    p.add_argument(
        "--expect-revision",
        type=int,
        metavar="REV",
        help="write only if the stored spec is still at REV (0: must not exist)",
    )
    _formats_option(
        p,
        "check that this format can express the spec (repeatable; default: every format "
        "but the narrow ones: " + ", ".join(CHECKED_BY_DEFAULT) + ")",
    )

    p = command("get", _get, "print a VM's spec as stored (its revision goes to stderr)")
    p.add_argument("--store", required=True, metavar="URL", help=STORE_HELP)
    p.add_argument("vm_id")

    p = command("delete", _delete, "remove a VM's spec from a store")
    p.add_argument("--store", required=True, metavar="URL", help=STORE_HELP)
    p.add_argument("vm_id")
    p.add_argument("--expect-revision", type=int, metavar="REV", help="delete only if the stored spec is still at REV")

    p = command("list", _list, "list the VM ids in a store with their revisions")
    p.add_argument("--store", required=True, metavar="URL", help=STORE_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    from configdrive.serve.command import add_serve_parser  # the metadata service (configdrive/serve/)

    add_serve_parser(command)


def _watch(args: argparse.Namespace) -> int:
    import logging
    import signal

    from configdrive.sinks import seed_folder
    from configdrive.stores import open_store

    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    store = open_store(args.source)
    watch = seed_folder(
        store,
        args.out_dir,
        args.format,
        keep_deleted=args.keep_deleted,
        qmp_targets=_qmp_map(args.qmp_map),
        qmp_timeout=args.qmp_timeout,
        jobs=args.jobs,
    )

    def on_hangup(signum: int, frame: object) -> None:
        if args.qmp_map:
            try:
                watch.swaps.targets = _qmp_map(args.qmp_map)
            except ConfigDriveError as err:
                logging.getLogger("configdrive.watch").error("keeping the old QMP map: %s", err)
        watch.follower.request_resync()

    signal.signal(signal.SIGTERM, lambda signum, frame: watch.follower.request_stop())
    signal.signal(signal.SIGINT, lambda signum, frame: watch.follower.request_stop())
    signal.signal(signal.SIGHUP, on_hangup)
    try:
        watch.follower.run(once=args.once)
    finally:
        store.close()
    return EXIT_FAILURE if args.once and watch.failures() else EXIT_OK


def _qmp_map(path: str | None) -> dict[str, Any]:
    from configdrive.errors import QmpError

    if not path:
        return {}
    from configdrive.inputs import read_regular_file
    from configdrive.qmp import load_targets
    from configdrive.yamldoc import parse_document

    try:
        data = parse_document(read_regular_file(path), path)
    except (InputError, SpecError) as err:
        raise QmpError(f"cannot read the QMP map {path}: {err}") from err
    if not isinstance(data, dict):
        raise QmpError(f"{path}: the QMP map must be a mapping of VM ids")
    return load_targets(data)


def _put(args: argparse.Namespace) -> int:
    from configdrive.stores import open_store, put_spec

    raw = _read_spec(args.spec)
    store = open_store(args.store)
    try:
        revision = put_spec(store, args.vm_id, raw, args.expect_revision, args.format)
    finally:
        store.close()
    print(f"{args.vm_id}: stored at revision {revision}", file=sys.stderr)
    return EXIT_OK


def _get(args: argparse.Namespace) -> int:
    from configdrive.stores import open_store

    store = open_store(args.store)
    try:
        record = store.get(args.vm_id)
    finally:
        store.close()
    if record is None:
        print(f"configdrive: {args.vm_id}: no spec in {store.url}", file=sys.stderr)
        return EXIT_FAILURE
    sys.stdout.buffer.write(record.raw)
    sys.stdout.flush()
    print(f"{args.vm_id}: revision {record.revision}", file=sys.stderr)
    return EXIT_OK


def _delete(args: argparse.Namespace) -> int:
    from configdrive.stores import open_store

    store = open_store(args.store)
    try:
        removed = store.delete(args.vm_id, args.expect_revision)
    finally:
        store.close()
    print(f"{args.vm_id}: {'deleted' if removed else 'no such spec'}", file=sys.stderr)
    return EXIT_OK if removed else EXIT_FAILURE


def _list(args: argparse.Namespace) -> int:
    from configdrive.stores import open_store

    store = open_store(args.store)
    try:
        snapshot = store.list()
    finally:
        store.close()
    if args.json:
        print(
            json.dumps(
                {
                    "revision": snapshot.revision,
                    "specs": {vm_id: record.revision for vm_id, record in sorted(snapshot.records.items())},
                },
                indent=2,
            )
        )
    else:
        for vm_id, record in sorted(snapshot.records.items()):
            print(f"{vm_id}\t{record.revision}")
    return EXIT_OK
