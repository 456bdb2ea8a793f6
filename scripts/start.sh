#!/usr/bin/env bash
# Install (first time) and start MedShield on the embedded defaults: SQLite file and local blob
# store under ./data (MEDSHIELD_DATA_DIR), SQLite-backed queue with one worker process.
# Open http://127.0.0.1:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec bash scripts/serve.sh "$@"
