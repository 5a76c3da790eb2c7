"""`quiet_libraries`: the libraries' info and warning lines off for a run unless -v, errors kept, all restored.
(What a real study run prints is checked end to end in test_run's killed-driver test.)"""
from __future__ import annotations

import importlib
import logging
import os

import optuna

from orchestrator.console import quiet_libraries

LIBRARIES = ("ray", "ray.tune", "mlflow", "mlflow.store.db.utils", "optuna", "alembic")


def test_a_quiet_run_turns_info_and_warnings_off_keeps_errors_and_restores_everything() -> None:
    importlib.import_module("ray")  # ray and optuna set their loggers' levels on first use: the state a run meets

    optuna.logging.get_verbosity()
    levels = {n: logging.getLogger(n).level for n in LIBRARIES}
    env = os.environ.get("RAY_AIR_NEW_OUTPUT")
    with quiet_libraries(verbose=1):
        for name in LIBRARIES:
            lg = logging.getLogger(name)
            assert not lg.isEnabledFor(logging.WARNING) and lg.isEnabledFor(logging.ERROR), name
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
    assert {n: logging.getLogger(n).level for n in LIBRARIES} == levels
    assert os.environ.get("RAY_AIR_NEW_OUTPUT") == env


def test_verbose_2_leaves_the_libraries_as_they_are() -> None:
    levels = {n: logging.getLogger(n).level for n in LIBRARIES}
    with quiet_libraries(verbose=2):
        assert {n: logging.getLogger(n).level for n in LIBRARIES} == levels
        assert logging.getLogger("optuna").isEnabledFor(logging.INFO)
