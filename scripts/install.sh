#!/usr/bin/env bash
# Install vared into the active Python environment, choosing the right PyTorch build first.
#   scripts/install.sh          runtime only
#   scripts/install.sh --dev    plus the test tools
# GPU users: install the CUDA build of torch you want first (https://pytorch.org/get-started/locally/),
# e.g. `pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128`; this script keeps
# any torch that is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if "$PY" -c "import torch" 2>/dev/null; then
    echo "install.sh: keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "install.sh: GPU found, installing the CUDA build of torch $TORCH_VERSION"
    "$PY" -m pip install "torch==$TORCH_VERSION"
else
    echo "install.sh: no GPU, installing the CPU build of torch $TORCH_VERSION"
    # A local wheel folder (pip's find-links) is tried first; otherwise PyTorch's CPU index.
    "$PY" -m pip install --no-index "torch==$TORCH_VERSION" 2>/dev/null \
        || "$PY" -m pip install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
fi

if [[ "${1:-}" == "--dev" ]]; then
    "$PY" -m pip install -e ".[dev]"
else
    "$PY" -m pip install -e .
fi
