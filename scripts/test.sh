#!/usr/bin/env bash
# Install (first time, with test tools) and run the whole test suite: SQLite and PostgreSQL,
# AppTest page flows and the real-browser test, then the blob-store tests again on SeaweedFS S3.
# Extra arguments go to pytest (one run, local blobs; MEDSHIELD_TEST_BLOBS=s3 for the object store).
set -euo pipefail
cd "$(dirname "$0")/.."
MEDSHIELD_DEV=1 bash scripts/install.sh
bash scripts/services.sh
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=False
.venv/bin/lint-imports --no-cache  # one-way imports (.importlinter): a new cycle fails here
if [ "$#" -gt 0 ]; then exec .venv/bin/python -m pytest "$@"; fi
.venv/bin/python -m pytest
# the storage, ingest, protect/restore and batch tests once more with every blob in SeaweedFS (S3)
MEDSHIELD_TEST_BLOBS=s3 exec .venv/bin/python -m pytest -q -p no:cacheprovider \
  tests/test_storage.py tests/test_ingest.py tests/test_protect.py tests/test_protect_cli.py tests/test_jobs.py
