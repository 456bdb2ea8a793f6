"""Decode and validate PNG, JPEG, DICOM and zip uploads under explicit limits."""

from core.imaging.decode import DecodedImage, decode_image  # noqa: F401
from core.imaging.sniff import sniff_format  # noqa: F401
