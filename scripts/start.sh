#!/usr/bin/env bash
# Install (first time) and start MedShield on the embedded defaults: SQLite file and local blob
# store under ./data (MEDSHIELD_DATA_DIR), SQLite-backed queue. Open http://127.0.0.1:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=False
exec .venv/bin/streamlit run Home.py --server.address "${MEDSHIELD_HOST:-127.0.0.1}" \
  --server.port "${MEDSHIELD_PORT:-8501}" "$@"
