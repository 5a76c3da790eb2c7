"""What a study run shows on the console: its own progress and results, not the libraries' banners.

Ray, Tune, Optuna and MLflow each announce themselves (Ray's token-authentication notice, Tune's experiment
table and TensorBoard hint, "A new study created in memory" once per Optuna sampler, MLflow's database set-up).
`quiet_libraries` hides their info and warning lines while a run lasts, unless ``verbose`` ≥ 2
(``orchestrator run -v``); errors always show. What it changes is restored when the run ends, so a program
that calls `run_study` keeps its own logging set-up.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import Iterator

__all__ = ["quiet_libraries", "scoped_environment"]

#: logger → the level it gets while a quiet run lasts
_LEVELS = {"ray": logging.ERROR, "mlflow": logging.ERROR, "alembic": logging.ERROR, "optuna": logging.ERROR}
#: Tune's "new output" reporter prints its experiment table whatever the verbosity; the classic one is silent at 0;
#: MLflow draws a progress bar for every artifact download (registering the front's models)
_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


@contextlib.contextmanager
def scoped_environment(values: dict[str, str], *, override: bool = False) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block (values already set there win, unless ``override``),
    restored afterwards: a run leaves no process-wide change behind."""
    before = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if override:
            os.environ[k] = v
        else:
            os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def quiet_libraries(verbose: int) -> Iterator[None]:
    """Hide the libraries' info and warning lines for the block unless ``verbose`` ≥ 2."""
    if verbose >= 2:
        yield
        return
    # each library sets its loggers' levels when it is first imported or used: do that first
    import optuna

    importlib.import_module("ray")
    optuna.logging.get_verbosity()
    loggers = {name: logging.getLogger(name) for name in _LEVELS}
    levels = {name: lg.level for name, lg in loggers.items()}
    for name, lg in loggers.items():
        lg.setLevel(max(_LEVELS[name], lg.getEffectiveLevel()))
    try:
        with scoped_environment(_ENV):
            yield
    finally:
        for name, lg in loggers.items():
            lg.setLevel(levels[name])
