"""Subcommands of the `vared` CLI, one module each; every module exposes ``register(subparsers)``.

A module's ``register`` adds its parser and sets ``func`` (``args → exit code``). Heavy imports (torch,
decord, models) happen inside ``func`` so ``vared --help`` stays fast.
"""
