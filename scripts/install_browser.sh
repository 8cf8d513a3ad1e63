#!/usr/bin/env bash
# Installs Debian's Chromium for the UI test (xinst_assets_tests/e2e/test_ui.py) when it is missing.
# Playwright drives this binary; its own browser download does not work offline. Without apt-get (or without
# root) it only says so: the UI test then skips with the reason.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "xinst: no chromium and no apt-get; the UI test will be skipped" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "xinst: installing chromium needs root; the UI test will be skipped" >&2
    exit 0
  fi
fi
echo "xinst: installing chromium with apt-get (for the UI test)..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
