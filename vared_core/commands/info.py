"""`vared info`: versions and the compute device."""
from __future__ import annotations

import argparse
import platform


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("info", help="print versions and the compute device")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    import vared_core

    print(f"vared_core {vared_core.__version__} | torch {torch.__version__} | python {platform.python_version()}")
    print(f"CUDA available: {torch.cuda.is_available()} | CPU threads: {torch.get_num_threads()}")
    return 0
