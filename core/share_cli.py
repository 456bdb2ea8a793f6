"""Offline tools for share packages (no database, no server):

    python -m core.share_cli keygen --out recipient          # writes recipient.key (0600) and recipient.pub
    python -m core.share_cli open image-7.msshare --key recipient.key --out original.png [--dicom original.dcm]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.errors import MedShieldError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.share_cli")
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen", help="make an X25519 key pair for receiving shares")
    k.add_argument("--out", required=True, help="path prefix: writes PREFIX.key and PREFIX.pub")
    o = sub.add_parser("open", help="restore the original from a share package")
    o.add_argument("package")
    o.add_argument("--key", required=True, help="the recipient's private key file")
    o.add_argument("--out", required=True, help="PNG file for the restored pixels (first frame)")
    o.add_argument("--dicom", help="also write the original DICOM (DICOM packages only)")
    args = p.parse_args(argv)
    from core.crypto import share

    try:
        if args.cmd == "keygen":
            priv, pub = share.generate_keypair()
            key_path = Path(args.out + ".key")
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(priv + "\n")
            Path(args.out + ".pub").write_text(pub + "\n")
            print(f"private key: {key_path} (mode 0600; keep it secret)\npublic key:  {pub}")
            return 0
        opened = share.open_package(Path(args.package).read_bytes(), share.load_private(Path(args.key).read_text()))
        from core.imaging.display import encode_png

        Path(args.out).write_bytes(encode_png(opened.pixels[0] if opened.frames > 1 else opened.pixels))
        if args.dicom:
            if opened.dicom_bytes is None:
                raise MedShieldError("This package holds no DICOM header.")
            Path(args.dicom).write_bytes(opened.dicom_bytes)
        print(f"restored image #{opened.image_id}: pixels verified against the package checksum")
        return 0
    except (MedShieldError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
