#!/usr/bin/env bash
# Install (first time, with test tools) and run the whole test suite: SQLite and PostgreSQL,
# AppTest page flows and the real-browser test. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
MEDSHIELD_DEV=1 bash scripts/install.sh
bash scripts/services.sh
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=False
.venv/bin/lint-imports --no-cache  # one-way imports (.importlinter): a new cycle fails here
exec .venv/bin/python -m pytest "$@"
