"""multinetctl doctor: not built yet."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser("doctor", help="(not built yet)")
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("multinetctl doctor: not built yet", file=sys.stderr)
    return 2
