#!/usr/bin/env bash
# Set up the project and run the main job on the embedded demo world (no downloads).
# Extra arguments are Hydra overrides, e.g. `bash scripts/demo.sh scale=smoke`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
# The whole loop (sft -> candidates -> labels by simulated annotators -> reward -> ppo), a safety gate
# after each stage, then the alignment eval report: runs/demo/report.html (its path is logged last).
align-pipeline "$@"
