#!/usr/bin/env bash
# Command one: set up, then run the whole pipeline on the embedded sample with small local models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DO_NOT_TRACK=1
exec .venv/bin/xinst demo "$@"
