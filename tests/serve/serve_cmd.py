"""``configdrive serve`` as cli.py wires it (add_serve_parser, run_serve), for the tests that
start the service as a process (in a network namespace)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from configdrive.serve.command import add_serve_parser


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="configdrive")
    sub = parser.add_subparsers(required=True)

    def command(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.set_defaults(command=func)
        return p

    add_serve_parser(command)
    args = parser.parse_args(argv)
    result: int = args.command(args)
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
