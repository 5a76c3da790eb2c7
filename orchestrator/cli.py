"""The `orchestrator` command (issue 6 brings `run`, `validate`, `pareto`, `compare`, `nightly`)."""
from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchestrator", description="YAML studies of vared_core on Ray Tune + Optuna + MLflow")
    parser.add_subparsers(dest="command")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        print("\nNo study commands yet: the study runner is tracked in issue 6.", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
