"""The `vared` console script is installed and runs."""
from __future__ import annotations

import subprocess
import sys


def test_vared_info_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "vared_core.cli", "info"], capture_output=True, text=True, check=True)
    assert "vared_core 0.1.0" in out.stdout and "torch" in out.stdout


def test_public_api_is_exported() -> None:
    import vared_core

    for name in ("DynamicSpec", "dynamize", "force_policy", "clip_gflops", "static_gflops", "efficiency_loss"):
        assert name in vared_core.__all__ and hasattr(vared_core, name)
