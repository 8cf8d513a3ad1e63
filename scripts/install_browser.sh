#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (xinst_assets_tests/e2e/test_ui.py) when it is missing.
# Playwright drives this binary; its own browser download is never used. When Chromium cannot be installed
# here (no apt-get, no root, no package), this says so and exits non-zero: the browser tests then fail with
# the reason, unless XINST_SKIP_BROWSER_TESTS=1 asks to skip them.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "${XINST_SKIP_BROWSER_TESTS:-}" = "1" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "xinst: no chromium and no apt-get to install it: the browser tests will fail" \
       "(install chromium, or set XINST_SKIP_BROWSER_TESTS=1)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "xinst: installing chromium needs root: the browser tests will fail" \
         "(install chromium, or set XINST_SKIP_BROWSER_TESTS=1)" >&2
    exit 1
  fi
fi
echo "xinst: installing chromium with apt-get (for the browser tests)..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
