"""The examples in the backbone modules' docstrings run and print what they show."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "vared_core.models",
    "vared_core.models.registry",
    "vared_core.models.r2plus1d",
    "vared_core.models.i3d",
    "vared_core.models.x3d",
    "vared_core.models.tsn",
]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
