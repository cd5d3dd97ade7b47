#!/usr/bin/env bash
# Create .venv with the project (editable) and its dev tools.
# On a machine without CUDA the CPU build of torch is installed first, so that the project's
# `torch` requirement is already met and pip does not pull a multi-GB CUDA build.
# Set TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu) to take torch from another index.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    python -m pip install -q torch
  elif [ -n "${TORCH_INDEX:-}" ]; then
    python -m pip install -q "torch==2.13.0" --index-url "$TORCH_INDEX"
  else
    python -m pip install -q "torch==2.13.0"
  fi
fi
python -m pip install -q -e ".[dev]"
# The safety filter's trained head (a few minutes): built here rather than kept in git, from the OpenAI
# moderation sample shipped in the package, the demo world's texts and refusals, so that every clone,
# with or without ../shared beside it, trains the same head.
# Retrained when the code or data it is trained from has changed since (e.g. after a pull).
HEAD=alignment/safety/assets/head.safetensors
INPUTS=(alignment/safety/train.py alignment/safety/data.py alignment/safety/head.py alignment/safety/refusal_texts.py
        alignment/safety/assets/moderation alignment/data/demo_content.py alignment/data/world.py)
if [ ! -f "$HEAD" ] || [ -n "$(find "${INPUTS[@]}" -newer "$HEAD" -print -quit)" ]; then
  echo "training the safety filter head into $HEAD"
  python -m alignment.safety.train --moderation --demo --refusals --out "$HEAD"
fi
echo "set up: $(python -c 'import torch, transformers, trl; print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")')"
