#!/usr/bin/env bash
# Installs what MedShield needs and leaves a ready virtual environment at .venv.
# The venv is cached per hash of the requirement files (and Python version), so a second run, or
# CI on the same machine, reuses it. Every install uses constraints.txt (torch/torchvision pins).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
DEV=${MEDSHIELD_DEV:-0}   # 1: also the browser for the browser test

have_root() { [ "$(id -u)" = 0 ]; }
apt_install() {
  if have_root && command -v apt-get >/dev/null; then
    echo "[install] apt-get install $*"
    (apt-get update -qq || true) >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    echo "[install] please install with your package manager: $*" >&2
  fi
}

# System packages: fonts for the detector's synthetic text and ultralytics (offline), and, for the
# tests, Chromium (browser test) and tesseract (OCR adversary).
fonts_missing=0
[ -d /usr/share/fonts/truetype/dejavu ] || fonts_missing=1
[ -d /usr/share/fonts/truetype/liberation ] || fonts_missing=1
if [ "$fonts_missing" = 1 ]; then apt_install fonts-dejavu-core fonts-liberation fonts-freefont-ttf; fi
if [ "$DEV" = 1 ] && [ ! -x /usr/bin/chromium ]; then apt_install chromium; fi
# tesseract: the independent OCR adversary of the tests and the PHI evaluation (never used by the app)
if [ "$DEV" = 1 ] && ! command -v tesseract >/dev/null; then apt_install tesseract-ocr tesseract-ocr-eng; fi
# a real PACS for the PACS tests (Orthanc + DICOMweb plugin, run in a network namespace: iproute2) and
# the DICOM validator (dciodvfy from dicom3tools) that checks every DICOM the product writes
pacs_missing=()
command -v Orthanc >/dev/null || pacs_missing+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || pacs_missing+=(orthanc-dicomweb)
command -v dciodvfy >/dev/null || pacs_missing+=(dicom3tools)
command -v ip >/dev/null || pacs_missing+=(iproute2)
if [ "$DEV" = 1 ] && [ ${#pacs_missing[@]} -gt 0 ]; then
  # the package would start a system Orthanc listening on every interface: forbid service starts
  made_policy=0
  if have_root && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt_install "${pacs_missing[@]}"
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  if have_root && command -v systemctl >/dev/null; then systemctl disable --now orthanc >/dev/null 2>&1 || true; fi
fi

# One environment for the app and the tests (the test tools are small; torch is not).
hash=$(cat requirements.txt requirements-dev.txt constraints.txt | \
       { cat; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
CACHE=${MEDSHIELD_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/medshield}
VENV="$CACHE/venv-$hash"
if [ ! -f "$VENV/.complete" ]; then
  echo "[install] building virtual environment $VENV (first time only)"
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip wheel
  "$VENV/bin/pip" install -q -r requirements-dev.txt -c constraints.txt
  "$VENV/bin/pip" check
  touch "$VENV/.complete"
else
  echo "[install] reusing cached virtual environment $VENV"
fi
ln -sfn "$VENV" "$ROOT/.venv"
