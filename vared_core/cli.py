"""The `vared` command: researcher-facing tools around vared_core.

Each subcommand lives in its own module under `vared_core.commands` and registers itself here.
"""
from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["build_parser", "main"]

#: subcommand modules under vared_core.commands, in the order `vared --help` lists them
COMMANDS = ("info", "make_synthetic", "train", "evaluate", "flops", "redundancy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vared", description="VA-RED² dynamic video CNNs: tools around vared_core")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"vared_core.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
