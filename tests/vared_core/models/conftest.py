"""Shared setup of the backbone tests."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_intra_op_thread() -> Iterator[None]:
    """Run each test on one intra-op thread, then restore the setting.

    The tiny clips give OpenMP little work to share; on a 2-core machine that other jobs share, a second thread
    waiting at every barrier made single steps take seconds instead of tens of milliseconds.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
