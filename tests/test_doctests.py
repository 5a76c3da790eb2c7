"""Every docstring example of both packages runs and prints what it says (examples marked +SKIP aside)."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import orchestrator
import vared_core


def _modules() -> list[str]:
    names = []
    for pkg in (vared_core, orchestrator):
        names.append(pkg.__name__)
        names += [info.name for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
    return sorted(names)


MODULES = _modules()


def test_modules_are_found() -> None:
    assert "vared_core.dynamic.cost" in MODULES and "orchestrator.pareto" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    for test in finder.find(module, name):
        result = runner.run(test, out=failures.append)
        assert result.failed == 0, f"{test.name} ({test.filename}:{test.lineno}):\n" + "".join(failures)
