"""Set-up shared by every vared_core test."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Run each test on one intra-op thread, then restore the setting.

    Tiny clips give OpenMP little work to share: on a 2-core machine that other jobs share, a second
    thread waiting at every barrier made single steps take seconds instead of milliseconds. One thread
    also makes CPU training runs bit-reproducible (the resume tests compare weights exactly).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
