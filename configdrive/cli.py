"""The ``configdrive`` command line: argparse, printing problems, exit codes. No logic of its own.

Exit codes: 0 success, 2 invalid input (every problem printed, nothing written), 1 other failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from configdrive.errors import ConfigDriveError, SpecError

EXIT_OK, EXIT_FAILURE, EXIT_INVALID = 0, 1, 2
FORMAT_NAMES = ("nocloud", "configdrive")

EXAMPLES = """\
examples:
  configdrive build vm.yaml -o seed.iso                      # NoCloud seed (label cidata)
  configdrive build vm.yaml -o seed.iso --format configdrive # OpenStack config drive (config-2)
  configdrive render vm.yaml --format configdrive --out-dir tree/
  configdrive validate specs/*.yaml --json
  configdrive inspect seed.iso
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
    except ConfigDriveError as err:
        print(f"configdrive: error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="configdrive", description="Build cloud-init seed ISOs (NoCloud, OpenStack config drive) "
        "from one validated VM spec.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(command=func)
        return p

    p = command("build", _build, "build a seed ISO from a spec")
    p.add_argument("spec", help="spec file (YAML or JSON), or - for standard input")
    p.add_argument("-o", "--output", required=True, help="ISO file to write (atomically, mode 0600)")
    p.add_argument("-f", "--format", choices=FORMAT_NAMES, default="nocloud", help="default: nocloud")

    p = command("render", _render, "write the seed's files to a folder instead of an ISO")
    p.add_argument("spec", help="spec file (YAML or JSON), or - for standard input")
    p.add_argument("-f", "--format", choices=FORMAT_NAMES, default="nocloud", help="default: nocloud")
    p.add_argument("--out-dir", required=True, help="folder to write into (created if missing)")

    p = command("validate", _validate, "check specs; print every problem with its field path")
    p.add_argument("specs", nargs="+", metavar="spec", help="spec files")
    p.add_argument("-f", "--format", choices=FORMAT_NAMES, action="append",
                   help="also check that this format can express the spec (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("inspect", _inspect, "show a seed ISO's label, files and parsed metadata as JSON")
    p.add_argument("iso", help="ISO file (ours or made by genisoimage, cloud-localds, Nova)")
    p.add_argument("--contents", action="store_true", help="include every file's text")

    command("schema", _schema, "print the VM spec's JSON Schema")
    return parser


def _load(source: str) -> Any:
    from configdrive.spec import load_spec, parse_spec

    if source == "-":
        return parse_spec(sys.stdin.buffer.read(), "<stdin>")
    return load_spec(source)


def _build(args: argparse.Namespace) -> int:
    from configdrive.output import write_file
    from configdrive.seed import build_iso

    data = build_iso(_load(args.spec), args.format)
    write_file(args.output, data)
    print(f"wrote {args.output} ({args.format}, {len(data)} bytes)", file=sys.stderr)
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    from configdrive.output import write_tree
    from configdrive.render import render

    tree = render(_load(args.spec), args.format)
    write_tree(args.out_dir, tree)
    print(f"wrote {len(tree)} files below {args.out_dir} ({args.format})", file=sys.stderr)
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from configdrive.render import render

    results = []
    for source in args.specs:
        problems: list[Any] = []
        try:
            spec = _load(source)
            for fmt in args.format or ():
                try:
                    render(spec, fmt)
                except SpecError as err:
                    problems += err.problems
        except SpecError as err:
            problems = list(err.problems)
        results.append({"spec": source, "valid": not problems, "problems": [p.as_dict() for p in problems]})
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

    image = read_iso(args.iso)
    report: dict[str, Any] = {
        "label": image.label,
        "format": {"cidata": "nocloud", "config-2": "configdrive"}.get(image.label.lower(), "unknown"),
        "files": {path: len(data) for path, data in image.files.items()},
        "metadata": _parsed_metadata(image.files),
    }
    if args.contents:
        report["contents"] = {p: d.decode("utf-8", "replace") for p, d in image.files.items()}
    print(json.dumps(report, indent=2, sort_keys=False))
    return EXIT_OK


def _parsed_metadata(files: dict[str, bytes]) -> dict[str, Any]:
    """The metadata files a reader would parse, parsed (YAML for NoCloud, JSON for config-2)."""
    import yaml

    parsed: dict[str, Any] = {}
    for name in ("meta-data", "network-config", "openstack/latest/meta_data.json",
                 "openstack/latest/network_data.json", "ec2/latest/meta-data.json"):
        if name in files:
            try:
                parsed[name] = yaml.safe_load(files[name])
            except yaml.YAMLError as err:
                parsed[name] = {"error": f"unparsable: {err}"}
    return parsed


def _schema(args: argparse.Namespace) -> int:
    from configdrive.spec import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK


def _print_problems(err: SpecError, source: str | None) -> None:
    where = err.source or source or "spec"
    print(f"configdrive: {where}: invalid spec, {len(err.problems)} problem(s):", file=sys.stderr)
    for problem in err.problems:
        print(f"  {problem}", file=sys.stderr)
