"""Uploaded bytes to RGB pixels, with the upload limits enforced before any pixel is decoded.

Pillow decodes; this module decides what we accept and turns every Pillow failure into one of
our typed errors, so no input bytes can make a request fail with anything else.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps

from serve_app.config import ImageLimits
from serve_app.errors import FaceserveError, ImageTooLarge, InvalidImage, UnsupportedFormat

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
# Pillow calls a JPEG that carries extra pictures (common from phone cameras) "MPO".
_FORMAT_ALIASES = {"MPO": "JPEG"}
_ORIENTATION_TAG = 0x0112
_SIDE_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
# Greyscale deeper than 8 bits; "I" is how Pillow holds 16-bit TIFF (and older Pillow 16-bit PNG).
_DEEP_GREY_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_MB = 1024 * 1024

# Our own max_pixels check runs on the header before any decode. Pillow's global guard would
# otherwise warn, or raise its own error, first and against a limit we do not configure.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class DecodedImage:
    """A decoded upload: read-only HxWx3 uint8 RGB pixels, EXIF orientation already applied.

    `width` and `height` are the image's own size. `pixels` are that size too unless the
    decode was reduced (see `decode_image`'s `min_side`); `scale` is then original pixels per
    decoded pixel, by which coordinates found in `pixels` map back to the image.
    """

    pixels: np.ndarray
    format: str
    width: int
    height: int
    scale: float = 1.0


def read_image_size(data: bytes) -> tuple[str, int, int]:
    """Return (format, width, height) from the header alone, without decoding pixels.

    The size is as displayed (EXIF orientation applied) where the header carries it.
    Raises `UnsupportedFormat` for images we do not accept and `InvalidImage` for non-images.
    """
    with _open(data) as image:
        width, height = image.size
        if _header_orientation(image) in _SIDE_SWAPPING_ORIENTATIONS:
            width, height = height, width
        return _format_of(image), width, height


def decode_image(
    data: bytes, limits: ImageLimits | None = None, min_side: int | None = None
) -> DecodedImage:
    """Decode an uploaded JPEG, PNG, WebP, BMP or TIFF into 8-bit RGB pixels.

    Limits are checked cheapest first: byte count, then the header's size, then the decode.
    Multi-frame files give their first frame. Raises only `FaceserveError` subclasses:
    `ImageTooLarge`, `UnsupportedFormat` or `InvalidImage`.

    `min_side`: the caller needs the longer side only this long, so a JPEG at least twice as
    long is decoded at 1/2, 1/4 or 1/8 scale by the JPEG decoder itself (Pillow's `draft`,
    several times faster), never below `min_side`. Other formats decode in full.
    """
    limits = limits or ImageLimits()
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"image is {len(data) / _MB:.1f} MB ({len(data):,} bytes); "
            f"the maximum is {limits.max_bytes / _MB:.1f} MB ({limits.max_bytes:,} bytes)"
        )
    with _open(data) as image:
        fmt = _format_of(image)
        # Orientation only swaps the sides, so the header's area and shorter side are final.
        width, height = image.size
        if width * height > limits.max_pixels:
            raise ImageTooLarge(
                f"image is {width}x{height} = {width * height:,} pixels; "
                f"the maximum is {limits.max_pixels:,}"
            )
        if min(width, height) < limits.min_side:
            raise InvalidImage(
                f"image is {width}x{height} pixels; "
                f"the minimum is {limits.min_side}x{limits.min_side}"
            )
        if min_side and fmt == "JPEG" and max(width, height) >= 2 * min_side:
            ratio = min_side / max(width, height)
            with _pillow_errors(f"{fmt} image data is truncated or corrupt"):
                # draft keeps the result at least this size; scales are powers of two.
                image.draft(image.mode, (math.ceil(width * ratio), math.ceil(height * ratio)))
        decoded_width = image.size[0]
        with _pillow_errors(f"{fmt} image data is truncated or corrupt"):
            image.load()
        with _pillow_errors(f"cannot convert {fmt} image in mode {image.mode} to RGB"):
            _apply_orientation(image)
            pixels = _to_rgb(image)
    pixels.flags.writeable = False
    scale = width / decoded_width
    if scale == 1.0:
        return DecodedImage(pixels, fmt, width=pixels.shape[1], height=pixels.shape[0])
    # Orientation may have swapped the sides: the original size is the decoded one scaled.
    full_w, full_h = round(pixels.shape[1] * scale), round(pixels.shape[0] * scale)
    return DecodedImage(pixels, fmt, width=full_w, height=full_h, scale=scale)


@contextmanager
def _pillow_errors(message: str) -> Iterator[None]:
    """Raise InvalidImage for whatever Pillow raises: its plugins use OSError, ValueError,
    SyntaxError, struct.error, EOFError, ... depending on the format and the damage."""
    try:
        yield
    except FaceserveError:
        raise
    except (Image.DecompressionBombError, MemoryError) as exc:
        # Only reachable if someone re-enables Pillow's global guard, or on a real OOM.
        raise ImageTooLarge("image is too large to decode") from exc
    except Exception as exc:
        raise InvalidImage(message) from exc


def _open(data: bytes) -> ImageFile.ImageFile:
    """Parse the header only (Image.open is lazy) and reject formats we do not accept."""
    if not data:
        raise InvalidImage("image is empty (0 bytes)")
    with _pillow_errors("data is not an image in a format we recognise"):
        image = Image.open(io.BytesIO(data))
    fmt = _format_of(image)
    if fmt not in ACCEPTED_FORMATS:
        image.close()
        raise UnsupportedFormat(
            f"{fmt} images are not supported; send one of {', '.join(ACCEPTED_FORMATS)}"
        )
    return image


def _format_of(image: Image.Image) -> str:
    fmt = image.format or "unknown"
    return _FORMAT_ALIASES.get(fmt, fmt)


def _header_orientation(image: Image.Image) -> int:
    """EXIF orientation when the header already holds it; 1 otherwise.

    Not `getexif()`: for PNG that decodes the whole image. TIFF needs nothing here because
    Pillow reports a TIFF's size with its orientation already applied.
    """
    raw = image.info.get("exif")
    if not raw:
        return 1
    try:
        exif = Image.Exif()
        exif.load(raw)
        return int(exif.get(_ORIENTATION_TAG, 1))
    except Exception:
        return 1


def _apply_orientation(image: Image.Image) -> None:
    """Apply EXIF orientation in place (no copy when there is none to apply)."""
    # Damaged EXIF is damaged metadata, not damaged pixels: keep the image as stored.
    with suppress(Exception):
        ImageOps.exif_transpose(image, in_place=True)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Convert any mode Pillow opens to a C-contiguous HxWx3 uint8 RGB array."""
    if image.mode in _DEEP_GREY_MODES:
        # Pillow's convert() clips 16-bit values at 255 instead of scaling them down.
        return _grey_to_rgb((np.clip(np.asarray(image), 0, 65535) >> 8).astype(np.uint8))
    if image.mode == "F":
        # Float samples have no agreed range (0..1, 0..65535, ...): stretch what is there.
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        low, high = float(values.min()), float(values.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        return _grey_to_rgb(np.round((values - low) * scale).astype(np.uint8))
    if image.has_transparency_data:
        # Transparent areas become white, as a viewer would show them, not black.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)
