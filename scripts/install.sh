#!/usr/bin/env bash
# Installs tb_varmap (and, with --test, what the test suite needs: Chromium, test extras).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
if [ "${1:-}" = "--test" ]; then
  python3 -m pip install --quiet -e ".[test]"
  if [ ! -x /usr/bin/chromium ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; browser tests will be skipped" >&2
  fi
else
  python3 -m pip install --quiet -e .
fi
