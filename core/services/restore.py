"""Restore (doctor): unwrap the data key, open every region (a wrong key or any changed byte is refused,
naming the region), paste back, and prove the result pixel-exact by SHA-256 against the digest taken at
upload; downloads of the original (PNG, JPEG, DICOM) and share packages to a recipient's key. Every
restore, download and share is audited."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import numpy as np
import pydicom
from PIL import Image as PILImage

from core import audit
from core.crypto.keys import unwrap_data_key
from core.crypto.sealing import Box, cipher, open_bytes, open_region, paste_region
from core.errors import Conflict, IntegrityError, InvalidImage, NotFound, ValidationError
from core.imaging.decode import decode_image, pixel_digest
from core.imaging.dicomio import dataset_bytes, set_pixels
from core.imaging.display import encode_png, to_display_uint8
from core.runtime import get_runtime
from core.security import Actor, Permission, service
from core.services.protect import _load, _regions


@dataclass
class RestoredImage:
    image_id: int
    pixels: np.ndarray
    protected: np.ndarray
    frames: int
    photometric: str
    verified: bool
    source_format: str
    dicom_bytes: bytes | None = None
    regions: list[Box] = field(default_factory=list)

    @property
    def png_is_lossless(self) -> bool:
        return self.pixels.dtype == np.uint8 or (self.pixels.dtype == np.uint16 and self.pixels.ndim == (3 if self.frames > 1 else 2))

    def png_bytes(self) -> bytes:
        """Lossless for 8-bit and unsigned 16-bit pixels; an 8-bit windowed view otherwise (signed
        CT values, floats): the DICOM download is then the faithful original."""
        first = self.pixels if self.frames == 1 else self.pixels[0]
        if self.png_is_lossless:
            return encode_png(first)
        return encode_png(to_display_uint8(self.pixels, photometric=self.photometric, frames=self.frames))

    def jpeg_bytes(self, quality: int = 95) -> bytes:
        view = to_display_uint8(self.pixels, photometric=self.photometric, frames=self.frames)
        buf = io.BytesIO()
        PILImage.fromarray(view).save(buf, format="JPEG", quality=quality)
        return buf.getvalue()



@service(Permission.IMAGE_RESTORE)
def restore_image(actor: Actor, image_id: int) -> RestoredImage:
    rt = get_runtime()
    img = _load(rt, image_id)
    if img.status != "protected" or not img.dek_wrapped or not img.dek_key_id:
        raise Conflict(f"Image #{image_id} is not protected, so there is nothing to restore.")
    try:
        dek = unwrap_data_key(rt.keyring.by_id(img.dek_key_id), image_id, bytes(img.dek_wrapped))
        data = rt.store.get(img.blob_key)
        prot = decode_image(data, rt.settings.limits)
        pixels = np.array(prot.pixels, copy=True)
        sealed = _regions(rt, image_id)
        aes = cipher(dek)
        for region in sealed:
            paste_region(pixels, region, open_region(aes, image_id, region), prot.frames)
        if pixel_digest(pixels) != img.pixel_sha256:
            raise IntegrityError("The restored pixels do not match the SHA-256 taken at upload: "
                                 "the protected image was changed.")
        dicom_bytes = None
        if img.protected_format == "dicom":
            if not img.header_sealed:
                raise IntegrityError("The sealed original DICOM header is missing.")
            header = pydicom.dcmread(io.BytesIO(open_bytes(dek, "dicom-header", image_id,
                                                           bytes(img.header_sealed))), force=True)
            set_pixels(header, pixels, prot.photometric)
            dicom_bytes = dataset_bytes(header)
    except (IntegrityError, InvalidImage, NotFound) as exc:
        audit.record(rt.engine, actor.username, actor.role, "image.restore", "failure",
                     object_type="image", object_id=image_id, detail=type(exc).__name__)
        raise
    audit.record(rt.engine, actor.username, actor.role, "image.restore", "success",
                 object_type="image", object_id=image_id, detail=f"regions={len(sealed)} verified=sha256")
    return RestoredImage(image_id, pixels, np.asarray(prot.pixels), prot.frames, prot.photometric,
                         True, img.source_format, dicom_bytes, [r.box for r in sealed])


@service(Permission.IMAGE_RESTORE)
def download_restored(actor: Actor, image_id: int, fmt: str = "png") -> tuple[str, bytes]:
    """(file name, bytes) of the restored original as png, jpeg or dicom; audited."""
    if fmt not in ("png", "jpeg", "dicom"):
        raise ValidationError("Download as png, jpeg or dicom.")
    restored = restore_image.__wrapped__(actor, image_id)  # permission checked once, above
    if fmt == "dicom":
        if restored.dicom_bytes is None:
            raise ValidationError("This image was not uploaded as DICOM.")
        name, data = f"image-{image_id}.dcm", restored.dicom_bytes
    elif fmt == "jpeg":
        name, data = f"image-{image_id}.jpg", restored.jpeg_bytes()
    else:
        name, data = f"image-{image_id}.png", restored.png_bytes()
    rt = get_runtime()
    audit.record(rt.engine, actor.username, actor.role, "image.download", "success",
                 object_type="image", object_id=image_id, detail=f"format={fmt}")
    return name, data


@service(Permission.IMAGE_RESTORE)
def export_share(actor: Actor, image_id: int, recipient_public_key: str) -> tuple[str, bytes]:
    """A share package for one recipient: protected pixels + sealed regions + the data key
    wrapped to their X25519 public key. Restorable offline with `python -m core.share_cli`."""
    from core.crypto.share import build_package, load_public

    recipient = load_public(recipient_public_key)
    rt = get_runtime()
    img = _load(rt, image_id)
    if img.status != "protected" or not img.dek_wrapped or not img.dek_key_id:
        raise Conflict(f"Image #{image_id} is not protected: protect it before sharing.")
    dek = unwrap_data_key(rt.keyring.by_id(img.dek_key_id), image_id, bytes(img.dek_wrapped))
    pkg = build_package(image_id, dek, rt.store.get(img.blob_key), img.protected_format or "png",
                        img.pixel_sha256 or "", _regions(rt, image_id),
                        bytes(img.header_sealed) if img.header_sealed else None, recipient)
    fp = hashlib.sha256(recipient_public_key.strip().encode()).hexdigest()[:12]
    audit.record(rt.engine, actor.username, actor.role, "image.share", "success",
                 object_type="image", object_id=image_id, detail=f"recipient_key={fp}")
    return f"image-{image_id}.msshare", pkg


@service(Permission.IMAGE_RESTORE)
def record_download(actor: Actor, image_id: int, fmt: str) -> None:
    """Audit a download of a restored original that the page already holds."""
    rt = get_runtime()
    audit.record(rt.engine, actor.username, actor.role, "image.download", "success",
                 object_type="image", object_id=image_id, detail=f"format={fmt}")
