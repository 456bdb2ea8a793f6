"""Share packages: an image's protected pixels and sealed regions, with its data key wrapped to a
recipient's X25519 public key (ECDH with an ephemeral key, HKDF-SHA-256, AES-256-GCM), in one
JSON file. The recipient restores it offline with their private key:

    python -m core.share_cli open package.msshare --key recipient.key --out original.png
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.crypto.sealing import SealedRegion
from core.errors import IntegrityError, InvalidImage, ValidationError

FORMAT = "medshield-share"
VERSION = 1
MAX_PACKAGE_BYTES = 256 * 1024 * 1024
_PRIV_PREFIX, _PUB_PREFIX = "msx25519-private:", "msx25519-public:"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str, what: str) -> bytes:
    try:
        return base64.b64decode(s, validate=True)
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"The share package's {what} is not valid base64.") from exc


def generate_keypair() -> tuple[str, str]:
    """(private, public) as short text; the private one is shown or downloaded once."""
    priv = X25519PrivateKey.generate()
    raw_priv = priv.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                  serialization.NoEncryption())
    raw_pub = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _PRIV_PREFIX + _b64(raw_priv), _PUB_PREFIX + _b64(raw_pub)


def load_public(text: str) -> X25519PublicKey:
    t = (text or "").strip()
    if not t.startswith(_PUB_PREFIX):
        raise ValidationError("That is not a MedShield public key (it starts with 'msx25519-public:').")
    raw = _unb64(t[len(_PUB_PREFIX):], "public key")
    if len(raw) != 32:
        raise ValidationError("The public key has the wrong length.")
    return X25519PublicKey.from_public_bytes(raw)


def load_private(text: str) -> X25519PrivateKey:
    t = (text or "").strip()
    if not t.startswith(_PRIV_PREFIX):
        raise ValidationError("That is not a MedShield private key.")
    raw = _unb64(t[len(_PRIV_PREFIX):], "private key")
    if len(raw) != 32:
        raise ValidationError("The private key has the wrong length.")
    return X25519PrivateKey.from_private_bytes(raw)


def _kek(shared: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"medshield-share-v1").derive(shared)


def _body_digest(body: dict) -> bytes:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).digest()


def build_package(image_id: int, dek: bytes, protected_bytes: bytes, protected_format: str,
                  pixel_sha256: str, regions: list[SealedRegion], header_sealed: bytes | None,
                  recipient: X25519PublicKey) -> bytes:
    body = {
        "image_id": int(image_id), "protected_format": protected_format,
        "protected": _b64(protected_bytes), "pixel_sha256": pixel_sha256,
        "header_sealed": _b64(header_sealed) if header_sealed else None,
        "regions": [{"index": r.index, "box": [r.box.x0, r.box.y0, r.box.x1, r.box.y1], "frame": r.box.frame,
                     "dtype": r.dtype, "shape": list(r.shape), "nonce": _b64(r.nonce),
                     "ciphertext": _b64(r.ciphertext)} for r in regions],
    }
    eph = X25519PrivateKey.generate()
    salt = os.urandom(16)
    kek = _kek(eph.exchange(recipient), salt)
    nonce = os.urandom(12)
    wrapped = AESGCM(kek).encrypt(nonce, dek, b"medshield-share-v1|" + _body_digest(body))
    pkg = {"format": FORMAT, "version": VERSION, "body": body, "key": {
        "ephemeral_public": _b64(eph.public_key().public_bytes(serialization.Encoding.Raw,
                                                               serialization.PublicFormat.Raw)),
        "salt": _b64(salt), "nonce": _b64(nonce), "wrapped_dek": _b64(wrapped)}}
    return json.dumps(pkg, separators=(",", ":")).encode()


def unseal_package(data: bytes, private: X25519PrivateKey) -> tuple[dict, bytes]:
    """Verify a package and unwrap its data key: (body, data key). Any changed byte, or the wrong key, is
    refused. The image is rebuilt from the body by core.share_cli.open_package."""
    if len(data) > MAX_PACKAGE_BYTES:
        raise InvalidImage("The share package is larger than the 256 MB this tool opens.")
    try:
        pkg = json.loads(data.decode("utf-8"))
        body, key = pkg["body"], pkg["key"]
        if pkg.get("format") != FORMAT or pkg.get("version") != VERSION:
            raise InvalidImage("This is not a MedShield share package of a known version.")
        eph = X25519PublicKey.from_public_bytes(_unb64(key["ephemeral_public"], "ephemeral key"))
        kek = _kek(private.exchange(eph), _unb64(key["salt"], "salt"))
        dek = AESGCM(kek).decrypt(_unb64(key["nonce"], "nonce"), _unb64(key["wrapped_dek"], "key"),
                                  b"medshield-share-v1|" + _body_digest(body))
    except InvalidTag:
        raise IntegrityError("The package cannot be opened: it was made for another key, or it "
                             "was changed after it was made.") from None
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, (IntegrityError, InvalidImage)):
            raise
        raise InvalidImage("The file is not a readable MedShield share package.") from exc
    return body, dek


def unb64(value, what: str) -> bytes:
    return _unb64(value, what)
