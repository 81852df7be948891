#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine, checks the committed panel
# bundle against its sources, and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
if [ -f frontend/package.json ]; then
  (cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
  if ! git diff --quiet -- tb_varmap/static; then
    echo "tb_varmap/static differs from a fresh build of frontend/: run 'cd frontend && npm run build' and commit" >&2
    git diff --stat -- tb_varmap/static >&2
    exit 1
  fi
fi
set +e
python3 -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
