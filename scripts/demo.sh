#!/usr/bin/env bash
# Installs tb_varmap and launches TensorBoard on demo_logs/ with the VarMap tab.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec tensorboard --logdir demo_logs --port "${PORT:-6006}" "$@"
