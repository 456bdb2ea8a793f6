FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    MEDSHIELD_DATA_DIR=/data YOLO_OFFLINE=1 YOLO_AUTOINSTALL=False \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-dejavu-core fonts-liberation fonts-freefont-ttf \
      libgl1 libglib2.0-0 curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt

COPY . .
# scripts/serve.sh runs .venv/bin/{python,streamlit}: point them at the image's interpreter
RUN mkdir -p .venv/bin && ln -s "$(command -v python)" .venv/bin/python \
 && ln -s "$(command -v streamlit)" .venv/bin/streamlit \
 && useradd --create-home --uid 10001 medshield && mkdir -p /data && chown medshield /data
USER medshield
VOLUME ["/data"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s CMD curl -fsS http://127.0.0.1:8501/_stcore/health || exit 1
ENV MEDSHIELD_HOST=0.0.0.0
CMD ["bash", "scripts/serve.sh"]
