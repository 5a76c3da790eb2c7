"""Process-level settings for fast CPU inference."""
from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["retain_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def retain_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Let glibc keep freed heap memory instead of returning it to the system after every tensor.

    By default glibc serves every allocation above a few MiB with a fresh ``mmap`` and unmaps it on free,
    so each forward of a video CNN page-faults and zero-fills its activations again: on the 2-core CI
    machine that was a third of the wall time of `benchmarks/dynamic_speed.py` (sys time 37 s of 61 s).
    Raising the mmap and trim thresholds makes freed blocks reusable, as jemalloc or tcmalloc (the
    allocators PyTorch's CPU tuning guide recommends) do. The process then keeps its peak heap.

    Returns True when applied, False where the C library is not glibc (nothing changes there).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes)))
    if not ok:  # older glibc caps the mmap threshold at 32 MiB
        ok = bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20))
    return ok and bool(mallopt(_M_TRIM_THRESHOLD, 2 * int(threshold_bytes)))
