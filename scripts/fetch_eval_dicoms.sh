#!/usr/bin/env bash
# Real DICOMs with burned-in text from Debian's octave-dicom package (GDCM's gdcmData samples), for the
# PHI evaluation only: downloaded with apt from the Debian archive into data/eval-dicoms/octave-dicom.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=data/eval-dicoms/octave-dicom
[ -f "$dest/CT-MONO2-16-ankle.dcm" ] && exit 0
tmp=$(mktemp -d)
(cd "$tmp" && apt-get download octave-dicom >/dev/null 2>&1)
dpkg-deb -x "$tmp"/octave-dicom_*.deb "$tmp/x"
mkdir -p "$dest"
cp "$tmp"/x/usr/share/octave/packages/dicom-*/imdata/*.dcm "$dest/"
cp "$tmp"/x/usr/share/doc/octave-dicom/copyright "$dest/COPYRIGHT.debian"
rm -rf "$tmp"
echo "octave-dicom samples in $dest"
