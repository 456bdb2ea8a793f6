"""Offline tools for share packages (no database, no server):

    python -m core.share_cli keygen --out recipient          # writes recipient.key (0600) and recipient.pub
    python -m core.share_cli open image-7.msshare --key recipient.key --out original.png [--dicom original.dcm]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import IntegrityError, InvalidImage, MedShieldError


@dataclass
class OpenedPackage:
    image_id: int
    pixels: np.ndarray
    frames: int
    protected_format: str
    dicom_bytes: bytes | None


def open_package(data: bytes, private) -> OpenedPackage:
    """Verify and restore a package offline: unseal it (core.crypto.share), open every region, paste it
    back and check the restored pixels against the package's checksum."""
    import io

    import pydicom

    from core.crypto.sealing import SealedRegion, cipher, open_bytes, open_region, paste_region
    from core.crypto.share import unb64, unseal_package
    from core.geometry import Box
    from core.imaging.decode import decode_image, pixel_digest
    from core.imaging.dicomio import dataset_bytes, set_pixels

    body, dek = unseal_package(data, private)
    try:
        image_id = int(body["image_id"])
        prot = decode_image(unb64(body["protected"], "image"))
        pixels = np.array(prot.pixels, copy=True)
        aes = cipher(dek)
        for r in body["regions"]:
            x0, y0, x1, y1 = r["box"]
            region = SealedRegion(int(r["index"]), Box(x0, y0, x1, y1, int(r["frame"])), r["dtype"],
                                  tuple(int(v) for v in r["shape"]), unb64(r["nonce"], "nonce"),
                                  unb64(r["ciphertext"], "region"))
            paste_region(pixels, region, open_region(aes, image_id, region), prot.frames)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidImage("The file is not a readable MedShield share package.") from exc
    if pixel_digest(pixels) != body["pixel_sha256"]:
        raise IntegrityError("The restored pixels do not match the checksum in the package.")
    dicom_bytes = None
    if body.get("header_sealed"):
        header = pydicom.dcmread(io.BytesIO(open_bytes(dek, "dicom-header", image_id,
                                                       unb64(body["header_sealed"], "header"))), force=True)
        set_pixels(header, pixels, prot.photometric)
        dicom_bytes = dataset_bytes(header)
    return OpenedPackage(image_id, pixels, prot.frames, body["protected_format"], dicom_bytes)


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
        opened = open_package(Path(args.package).read_bytes(), share.load_private(Path(args.key).read_text()))
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
