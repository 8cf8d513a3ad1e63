#!/usr/bin/env bash
# Command two: set up, then run the whole test suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser tests need Debian's chromium. A failed install does not stop the suite: those tests then fail
# and say why (XINST_SKIP_BROWSER_TESTS=1 skips them on a machine that cannot have a browser).
bash scripts/install_browser.sh || echo "xinst: chromium is not installed; the browser tests will fail" >&2
export DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# pytest exits 5 when it collected no test: with `set -e` that fails this script, as it should.
exec .venv/bin/pytest "$@"
