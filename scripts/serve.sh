#!/usr/bin/env bash
# Run the queue worker and the app together (after scripts/install.sh). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=False
.venv/bin/python -m core.worker --workers "${MEDSHIELD_WORKERS:-2}" &
worker=$!
trap 'kill $worker 2>/dev/null || true' EXIT INT TERM
.venv/bin/streamlit run Home.py --server.address "${MEDSHIELD_HOST:-127.0.0.1}" \
  --server.port "${MEDSHIELD_PORT:-8501}" "$@"
