#!/usr/bin/env bash
# Set up the project and run the main job on the embedded demo world (no downloads).
# Extra arguments are Hydra overrides, e.g. `bash scripts/demo.sh scale=smoke`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
# The stages in order, each reading the previous one's outputs from the same run directory.
align-sft "$@"
align-reward "$@"
align-ppo "$@"
echo "outputs: runs/demo/{sft,reward,ppo}/ (metrics.json, safety.json, report.html, model/)"
