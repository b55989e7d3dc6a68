"""multinetctl's entry point: one subcommand per module of this package.

Each module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int` as the parser's default; the exit code is what it returns.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import multinet

SUBCOMMANDS = ("validate", "show", "explain", "status", "doctor")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="multinetctl",
                                  description="Inspect and check multinet on this node.")
    top.add_argument("--version", action="version", version=f"multinetctl {multinet.__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"multinet.cli.ctl.{name}").register(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
