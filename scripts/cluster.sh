#!/usr/bin/env bash
# The cluster layout without Docker, on this machine: SeaweedFS (S3 on 127.0.0.1:8333), the existing
# PostgreSQL and Redis, N app replicas (ports 8501...) and M queue workers, sharing only those three.
#
#   bash scripts/cluster.sh env > .env.cluster            # generated keys every replica must share
#   set -a; . ./.env.cluster; set +a
#   bash scripts/cluster.sh up 2 4                        # 2 app replicas, 4 workers
#   bash scripts/cluster.sh down
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${MEDSHIELD_CLUSTER_DIR:-data/cluster}
case "${1:-}" in
  env)
    py=${PYTHON:-python3}
    echo "MEDSHIELD_MASTER_KEY=$($py -c 'import base64,os;print(base64.b64encode(os.urandom(32)).decode())')"
    echo "MEDSHIELD_COOKIE_KEY=$($py -c 'import secrets;print(secrets.token_urlsafe(48))')"
    echo "MEDSHIELD_DEID_KEY=$($py -c 'import secrets;print(secrets.token_urlsafe(48))')"
    echo "DATABASE_URL=${DATABASE_URL:-postgresql+psycopg2://postgres@127.0.0.1:5432/medshield}"
    echo "REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}"
    echo "MEDSHIELD_BLOB_URL=s3://medshield/blobs"
    echo "MEDSHIELD_S3_ENDPOINT=http://127.0.0.1:8333"
    echo "AWS_ACCESS_KEY_ID=medshield"
    echo "AWS_SECRET_ACCESS_KEY=change-me-s3-secret"
    ;;
  up)
    apps=${2:-1}; workers=${3:-2}
    bash scripts/install.sh
    mkdir -p "$RUN/seaweed"
    .venv/bin/weed server -dir="$RUN/seaweed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3 -s3.port=8333 \
      -s3.port.iceberg=0 -s3.port.lance=0 -s3.config=deploy/seaweed-s3.json > "$RUN/seaweed.log" 2>&1 & echo $! > "$RUN/seaweed.pid"
    for _ in $(seq 1 60); do
      .venv/bin/python -c "import boto3,os;c=boto3.client('s3',endpoint_url=os.environ['MEDSHIELD_S3_ENDPOINT'],region_name='us-east-1');c.list_buckets()" 2>/dev/null && break
      sleep 1
    done
    .venv/bin/python -c "import boto3,os;c=boto3.client('s3',endpoint_url=os.environ['MEDSHIELD_S3_ENDPOINT'],region_name='us-east-1')
try: c.create_bucket(Bucket='medshield')
except c.exceptions.BucketAlreadyOwnedByYou: pass"
    .venv/bin/python -m core.cli init
    threads=$(( $(nproc) / workers )); [ "$threads" -ge 1 ] || threads=1  # the cores shared out, no oversubscription
    for i in $(seq 1 "$workers"); do
      MEDSHIELD_DATA_DIR="$RUN/worker$i" .venv/bin/python -m core.worker --workers 2 --cpu-threads "$threads" \
        > "$RUN/worker$i.log" 2>&1 &
      echo $! > "$RUN/worker$i.pid"
    done
    for i in $(seq 1 "$apps"); do
      port=$((8500 + i))
      MEDSHIELD_DATA_DIR="$RUN/app$i" .venv/bin/streamlit run Home.py --server.address 127.0.0.1 \
        --server.port "$port" > "$RUN/app$i.log" 2>&1 & echo $! > "$RUN/app$i.pid"
      echo "app replica $i: http://127.0.0.1:$port"
    done
    ;;
  down)
    for f in "$RUN"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; done
    ;;
  *) echo "usage: $0 env | up [apps] [workers] | down" >&2; exit 2 ;;
esac
