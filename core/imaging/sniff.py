"""File type from content (magic bytes), never from the name."""

from __future__ import annotations

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def _looks_like_raw_dicom(data: bytes) -> bool:
    """A DICOM data set written without the 128-byte preamble: starts with a group 0x0002 or
    0x0008 element in little-endian, with a plausible explicit VR or implicit length."""
    if len(data) < 8 or data[1:2] != b"\x00" or data[0:1] not in (b"\x02", b"\x08"):
        return False
    vr = data[4:6]
    return vr.isalpha() and vr.isupper() or data[6:8] == b"\x00\x00"


def sniff_format(data: bytes) -> str | None:
    """'png', 'jpeg', 'dicom', 'zip' or None."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(ZIP_MAGICS):
        return "zip"
    if _looks_like_raw_dicom(data):
        return "dicom"
    return None


def describe_unknown(data: bytes) -> str:
    """A short human hint for a file we do not accept."""
    if not data:
        return "The file is empty."
    head = data[:512]
    if head.startswith(b"%PDF"):
        return "This is a PDF, not an image. Upload PNG, JPEG, DICOM or a zip of those."
    if head[:4] in (b"GIF8",) or head[:2] == b"BM" or head[:4] in (b"II*\x00", b"MM\x00*"):
        return "GIF, BMP and TIFF are not accepted. Convert to PNG, or upload DICOM."
    if head.startswith((b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!")):
        return "Only zip archives are accepted (not gzip, 7z or rar)."
    try:
        head.decode("utf-8")
        return "This is a text file, not an image (whatever its name says)."
    except UnicodeDecodeError:
        pass
    return "Unrecognised file type: upload PNG, JPEG, DICOM or a zip of those."
