"""Stored photos encrypted at rest: AES-256-GCM (`cryptography`), a fresh 96-bit nonce per
photo, stored as MAGIC + nonce + ciphertext-with-tag."""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from serve_app.errors import InvalidParameter

MAGIC = b"FSG1"
_AAD = b"faceserve-photo"


class PhotoCipher:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise InvalidParameter("the photo key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)

    def seal(self, photo: bytes) -> bytes:
        nonce = os.urandom(12)
        return MAGIC + nonce + self._aead.encrypt(nonce, photo, _AAD)

    def open(self, sealed: bytes) -> bytes:
        if not sealed.startswith(MAGIC):
            raise InvalidParameter("not a sealed photo")
        nonce, body = sealed[4:16], sealed[16:]
        return self._aead.decrypt(nonce, body, _AAD)


def load_photo_key(value: str, path: Path | None) -> bytes:
    """The key from FACESERVE_IMAGE_KEY (base64) or FACESERVE_IMAGE_KEY_FILE; a clear start
    error naming both when neither gives 32 bytes."""
    text = value
    source = "FACESERVE_IMAGE_KEY"
    if not text and path is not None:
        source = f"FACESERVE_IMAGE_KEY_FILE {path}"
        try:
            text = Path(path).read_text().strip()
        except OSError as exc:
            raise InvalidParameter(f"{source}: {exc.strerror}") from None
    if not text:
        raise InvalidParameter(
            "FACESERVE_STORE_IMAGES is on but no photo key is set: give 32 random bytes, "
            "base64-encoded, in FACESERVE_IMAGE_KEY or FACESERVE_IMAGE_KEY_FILE "
            "(e.g. `openssl rand -base64 32`)"
        )
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise InvalidParameter(f"{source} must be 32 bytes, base64-encoded")  # never echo it
    return key
