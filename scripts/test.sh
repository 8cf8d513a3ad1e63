#!/usr/bin/env bash
# Command two: set up, then run the whole test suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# pytest exits 5 when it collected no test: with `set -e` that fails this script, as it should.
exec .venv/bin/pytest "$@"
