"""The `vared` command: researcher-facing tools around vared_core.

Subcommands land with their issues (train, eval, flops, redundancy, make-synthetic); today: `info`.
"""
from __future__ import annotations

import argparse
import platform
import sys

__all__ = ["main"]


def _info(args: argparse.Namespace) -> int:
    import torch

    import vared_core

    print(f"vared_core {vared_core.__version__} | torch {torch.__version__} | python {platform.python_version()}")
    print(f"CUDA available: {torch.cuda.is_available()} | CPU threads: {torch.get_num_threads()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vared", description="VA-RED² dynamic video CNNs: tools around vared_core")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print versions and the compute device")
    info.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
