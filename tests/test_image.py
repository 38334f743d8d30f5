"""Decoding uploads: accepted formats, orientation, colour modes, and the errors clients see."""

from __future__ import annotations

import io
import random
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from serve_app.config import ImageLimits
from serve_app.errors import FaceserveError, ImageTooLarge, InvalidImage, UnsupportedFormat
from serve_app.vision.image import DecodedImage, decode_image, read_image_size

ORIENTATION = 0x0112


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def quadrants(width: int = 64, height: int = 48) -> np.ndarray:
    """Four flat colour blocks: survives lossy codecs and shows any rotation or flip."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 2, : width // 2] = (220, 30, 30)
    pixels[: height // 2, width // 2 :] = (30, 200, 40)
    pixels[height // 2 :, : width // 2] = (40, 40, 210)
    pixels[height // 2 :, width // 2 :] = (230, 230, 40)
    return pixels


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG built by hand, for what Pillow cannot write (16-bit RGB, lying headers)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def png_rows(samples: np.ndarray) -> bytes:
    """Big-endian 16-bit samples, each row behind filter type 0."""
    return b"".join(b"\0" + row.astype(">u2").tobytes() for row in samples)


def rgb16_tiff(samples: np.ndarray) -> bytes:
    """An uncompressed little-endian 16-bit-per-channel RGB TIFF built by hand."""
    height, width, _ = samples.shape
    pixels = samples.astype("<u2").tobytes()
    entries = [  # (tag, type, count, value); type 3 = SHORT, 4 = LONG
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, 0),  # BitsPerSample: offset patched below
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 1, 0),  # StripOffsets: patched below
        (277, 3, 1, 3),
        (278, 4, 1, height),
        (279, 4, 1, len(pixels)),
    ]
    bits_offset = 8 + 2 + 12 * len(entries) + 4
    data_offset = bits_offset + 6
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = {258: bits_offset, 273: data_offset}.get(tag, value)
        # A single SHORT sits left-justified in the 4-byte value field.
        single_short = kind == 3 and count == 1
        field = struct.pack("<HH", value, 0) if single_short else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + field
    ifd += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<3H", 16, 16, 16) + pixels


# --- accepted formats -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "tolerance"),
    [("JPEG", 8), ("PNG", 0), ("WEBP", 8), ("BMP", 0), ("TIFF", 0)],
)
def test_each_accepted_format_round_trips(fmt: str, tolerance: int) -> None:
    original = quadrants()
    decoded = decode_image(encode(Image.fromarray(original), fmt))

    assert isinstance(decoded, DecodedImage)
    assert decoded.format == fmt
    assert (decoded.width, decoded.height) == (64, 48)
    assert decoded.pixels.shape == (48, 64, 3)
    assert decoded.pixels.dtype == np.uint8
    assert decoded.pixels.flags.c_contiguous
    error = np.abs(decoded.pixels.astype(int) - original.astype(int))
    assert error.mean() <= tolerance


def test_read_image_size_reads_the_header() -> None:
    assert read_image_size(encode(Image.fromarray(quadrants(64, 48)), "PNG")) == ("PNG", 64, 48)


def test_pixels_are_read_only() -> None:
    decoded = decode_image(encode(Image.fromarray(quadrants()), "PNG"))
    with pytest.raises(ValueError):
        decoded.pixels[0, 0] = 0


def test_mpo_from_a_phone_camera_is_a_jpeg_and_gives_its_first_picture() -> None:
    first, second = Image.new("RGB", (40, 40), "red"), Image.new("RGB", (40, 40), "blue")
    data = encode(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"

    decoded = decode_image(data)
    assert decoded.format == "JPEG"
    assert read_image_size(data) == ("JPEG", 40, 40)
    np.testing.assert_allclose(decoded.pixels[20, 20], (255, 0, 0), atol=4)


@pytest.mark.parametrize("fmt", ["WEBP", "TIFF"])
def test_multi_frame_images_give_their_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (40, 40), colour) for colour in ("red", "lime", "blue")]
    params = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], **params)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3

    decoded = decode_image(data)
    assert decoded.pixels.shape == (40, 40, 3)
    np.testing.assert_array_equal(decoded.pixels[20, 20], (255, 0, 0))


# --- orientation ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_6_is_applied(fmt: str) -> None:
    # 40 wide, 60 high as stored; orientation 6 means "rotate 90 degrees clockwise to view".
    stored = np.full((60, 40, 3), 255, np.uint8)
    stored[:15] = (255, 0, 0)  # a red band along the stored top edge
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    data = encode(Image.fromarray(stored), fmt, exif=exif)

    decoded = decode_image(data)

    assert (decoded.width, decoded.height) == (60, 40)
    assert decoded.pixels.shape == (40, 60, 3)
    # After a clockwise quarter turn the stored top edge is the right edge.
    right, left = decoded.pixels[:, -5:].astype(int), decoded.pixels[:, :5].astype(int)
    assert right[..., 0].mean() > 200 and right[..., 1].mean() < 60
    assert left.min() > 200
    assert read_image_size(data) == (fmt, 60, 40)


def test_damaged_exif_keeps_the_image_as_stored() -> None:
    data = encode(Image.fromarray(quadrants()), "JPEG", exif=b"Exif\0\0" + b"\xff" * 40)
    decoded = decode_image(data)
    assert decoded.pixels.shape == (48, 64, 3)


# --- colour modes -----------------------------------------------------------------------------


def test_greyscale_becomes_three_equal_channels() -> None:
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (40, 1))  # 40x64, 0..252
    decoded = decode_image(encode(Image.fromarray(grey, "L"), "PNG"))
    assert decoded.pixels.shape == (40, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(decoded.pixels[..., channel], grey)


def test_one_bit_image_is_black_and_white() -> None:
    image = Image.new("1", (40, 40), 0)
    image.paste(1, (0, 0, 20, 40))
    decoded = decode_image(encode(image, "BMP"))
    np.testing.assert_array_equal(decoded.pixels[0, 0], (255, 255, 255))
    np.testing.assert_array_equal(decoded.pixels[0, 39], (0, 0, 0))


def test_transparent_rgba_becomes_white_not_black() -> None:
    rgba = np.zeros((40, 40, 4), np.uint8)  # fully transparent black ...
    rgba[:, 20:] = (255, 0, 0, 255)  # ... beside opaque red
    rgba[:20, 20:, 3] = 128  # and half-transparent red above it
    decoded = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(decoded.pixels[30, 5], (255, 255, 255))
    np.testing.assert_array_equal(decoded.pixels[30, 30], (255, 0, 0))
    np.testing.assert_allclose(decoded.pixels[5, 30], (255, 127, 127), atol=2)


def test_palette_image_keeps_its_colours_and_transparency_becomes_white() -> None:
    image = Image.new("P", (40, 40), 0)
    image.putpalette([0, 0, 0, 10, 200, 30, 250, 120, 0] + [0] * (253 * 3))
    image.paste(1, (0, 0, 20, 40))
    image.paste(2, (20, 0, 40, 20))
    data = encode(image, "PNG", transparency=0)  # index 0 (lower right) is transparent

    decoded = decode_image(data)
    np.testing.assert_array_equal(decoded.pixels[5, 5], (10, 200, 30))
    np.testing.assert_array_equal(decoded.pixels[5, 30], (250, 120, 0))
    np.testing.assert_array_equal(decoded.pixels[30, 30], (255, 255, 255))


def test_16_bit_greyscale_png_is_scaled_down_not_clipped() -> None:
    samples = np.linspace(0, 65535, 64 * 40).reshape(40, 64).astype(np.uint16)
    data = raw_png(64, 40, 16, 0, png_rows(samples))
    assert Image.open(io.BytesIO(data)).mode == "I;16"

    pixels = decode_image(data).pixels

    assert pixels.min() == 0 and pixels.max() == 255
    np.testing.assert_array_equal(pixels[..., 0], samples >> 8)
    assert len(np.unique(pixels)) == 256  # a full ramp, not a handful of clipped values


def test_16_bit_greyscale_written_by_pillow_is_scaled_down() -> None:
    samples = np.tile(np.array([0, 257, 32768, 65535], np.uint16).repeat(10), (40, 1))
    decoded = decode_image(encode(Image.fromarray(samples), "TIFF"))
    np.testing.assert_array_equal(decoded.pixels[0, ::10, 0], (0, 1, 128, 255))


def test_32_bit_integer_greyscale_is_read_as_16_bit() -> None:
    samples = np.tile(np.array([0, 32768, 65535, 70000], np.int32).repeat(10), (40, 1))
    decoded = decode_image(encode(Image.fromarray(samples, "I"), "TIFF"))
    np.testing.assert_array_equal(decoded.pixels[0, ::10, 0], (0, 128, 255, 255))


def test_float_greyscale_is_stretched_to_8_bit() -> None:
    samples = np.tile(np.linspace(0.0, 1.0, 40, dtype=np.float32), (40, 1))
    pixels = decode_image(encode(Image.fromarray(samples, "F"), "TIFF")).pixels
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255


@pytest.mark.parametrize("container", ["PNG", "TIFF"])
def test_16_bit_rgb_keeps_the_high_byte(container: str) -> None:
    samples = np.zeros((40, 40, 3), np.uint16)
    samples[...] = (0xFF00, 0x8000, 0x00FF)
    data = raw_png(40, 40, 16, 2, png_rows(samples.reshape(40, -1)))
    if container == "TIFF":
        data = rgb16_tiff(samples)
    decoded = decode_image(data)
    assert decoded.format == container
    np.testing.assert_array_equal(decoded.pixels[10, 10], (255, 128, 0))


def test_cmyk_jpeg_becomes_rgb() -> None:
    cyan = Image.new("CMYK", (40, 40), (255, 0, 0, 0))
    data = encode(cyan, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"

    decoded = decode_image(data)
    assert decoded.pixels.shape == (40, 40, 3)
    np.testing.assert_allclose(decoded.pixels[20, 20], (0, 255, 255), atol=4)


# --- errors -----------------------------------------------------------------------------------


def noisy_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    return encode(Image.fromarray(rng.integers(0, 256, (120, 160, 3), np.uint8)), "JPEG")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_is_invalid(fmt: str) -> None:
    data = noisy_jpeg() if fmt == "JPEG" else encode(Image.open(io.BytesIO(noisy_jpeg())), "PNG")
    with pytest.raises(InvalidImage, match="truncated or corrupt") as raised:
        decode_image(data[: len(data) // 2])
    assert type(raised.value) is InvalidImage
    assert raised.value.code == "invalid_image"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # left as Pillow ships it


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, this is a text file\nnot an image\n" * 4, b"\x89PNG\r\n\x1a\n"],
    ids=["empty", "text", "png-signature-only"],
)
def test_non_images_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidImage) as raised:
        decode_image(data)
    assert type(raised.value) is InvalidImage
    with pytest.raises(InvalidImage):
        read_image_size(data)


def test_tiny_image_is_invalid_and_names_the_minimum() -> None:
    with pytest.raises(InvalidImage, match="32") as raised:
        decode_image(encode(Image.new("RGB", (1, 1)), "PNG"))
    assert raised.value.message == "image is 1x1 pixels; the minimum is 32x32"


def test_huge_png_header_is_rejected_before_any_decode() -> None:
    # The header claims 30000x30000 (2.7 GB of RGB); the data behind it is a few bytes.
    data = raw_png(30000, 30000, 8, 2, b"\0" * 16)
    assert read_image_size(data) == ("PNG", 30000, 30000)

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor may Pillow's own bomb guard warn first
        with pytest.raises(ImageTooLarge, match="30000x30000") as raised:
            decode_image(data)
    assert time.perf_counter() - started < 1.0
    assert raised.value.http_status == 413


def test_bytes_over_the_limit_are_rejected_before_parsing() -> None:
    limits = ImageLimits(max_bytes=1000)
    with pytest.raises(ImageTooLarge, match="MB") as raised:
        decode_image(b"not even an image" * 100, limits)
    assert "1,700 bytes" in raised.value.message and "1,000 bytes" in raised.value.message
    decode_image(encode(Image.new("RGB", (40, 40)), "PNG"), limits)  # small enough: fine


@pytest.mark.parametrize("fmt", ["GIF", "ICO", "PPM", "TGA"])
def test_other_real_formats_are_unsupported(fmt: str) -> None:
    data = encode(Image.fromarray(quadrants()), fmt)
    with pytest.raises(UnsupportedFormat) as raised:
        decode_image(data)
    assert isinstance(raised.value, InvalidImage)
    assert fmt in raised.value.message
    assert "JPEG, PNG, WEBP, BMP, TIFF" in raised.value.message
    assert raised.value.http_status == 415
    with pytest.raises(UnsupportedFormat):
        read_image_size(data)


def test_custom_pixel_limit() -> None:
    data = encode(Image.new("RGB", (40, 40)), "PNG")
    with pytest.raises(ImageTooLarge, match="1,599"):
        decode_image(data, ImageLimits(max_pixels=1599))
    assert decode_image(data, ImageLimits(max_pixels=1600)).width == 40


def test_custom_minimum_side() -> None:
    data = encode(Image.new("RGB", (60, 40)), "PNG")
    with pytest.raises(InvalidImage, match="the minimum is 41x41"):
        decode_image(data, ImageLimits(min_side=41))
    assert decode_image(data, ImageLimits(min_side=40)).height == 40
    assert decode_image(encode(Image.new("RGB", (1, 1)), "PNG"), ImageLimits(min_side=1)).width == 1


def test_default_limits_apply_when_none_given() -> None:
    defaults = ImageLimits()
    side = int(defaults.max_pixels**0.5) + 1
    data = raw_png(side, side, 8, 0, b"\0")
    with pytest.raises(ImageTooLarge):
        decode_image(data)
    with pytest.raises(ImageTooLarge):
        decode_image(data, None)


# Pillow warns about some damage it reads past ("Truncated File Read"); only errors matter here.
@pytest.mark.filterwarnings("ignore::UserWarning:PIL")
def test_random_and_corrupted_bytes_raise_only_our_errors() -> None:
    rng = random.Random(1234)
    picture = Image.fromarray(quadrants())
    valid = [encode(picture, fmt) for fmt in ("PNG", "JPEG", "WEBP", "BMP", "TIFF")]
    valid += [
        encode(picture, "TIFF", compression="tiff_lzw"),
        encode(picture.convert("P"), "PNG"),
        encode(picture.convert("CMYK"), "JPEG"),
    ]
    samples = [rng.randbytes(rng.randrange(0, 2000)) for _ in range(200)]
    for _ in range(1500):
        data = bytearray(rng.choice(valid))
        action = rng.randrange(4)
        if action == 0:  # flip a few bytes anywhere
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif action == 1:  # flip a byte or two in the header, where the parsers branch
            for _ in range(rng.randrange(1, 3)):
                data[rng.randrange(min(200, len(data)))] = rng.randrange(256)
        elif action == 2:  # cut it short
            del data[rng.randrange(1, len(data)) :]
        else:  # splice in junk
            at = rng.randrange(len(data))
            data[at:at] = rng.randbytes(rng.randrange(1, 64))
        samples.append(bytes(data))

    escaped = []
    for data in samples:
        for call in (decode_image, read_image_size):
            try:
                call(data)
            except FaceserveError:
                continue
            except Exception as exc:
                escaped.append(f"{call.__name__}({data[:24]!r}...): {type(exc).__name__}: {exc}")
    assert escaped == []


def test_large_jpeg_decodes_reduced_but_reports_its_own_size() -> None:
    photo = Image.fromarray(np.kron(quadrants(), np.ones((50, 50, 1), np.uint8)))  # 3200x2400
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored sideways: displayed 2400x3200
    data = encode(photo, "JPEG", quality=90, exif=exif)
    full = decode_image(data)
    reduced = decode_image(data, min_side=1000)
    assert (full.width, full.height, full.scale) == (2400, 3200, 1.0)
    assert (reduced.width, reduced.height) == (2400, 3200)
    # 1/2 is the smallest JPEG scale keeping the longer side >= 1000 (1/4 gives 800).
    assert reduced.scale == 2.0 and reduced.pixels.shape == (1600, 1200, 3)
    # Same picture, same orientation: the reduced decode matches the full one shrunk.
    shrunk = np.asarray(Image.fromarray(full.pixels).resize((1200, 1600), Image.Resampling.BOX))
    assert np.abs(shrunk.astype(int) - reduced.pixels.astype(int)).mean() < 3
    # Nothing to gain: small enough already, or not a JPEG.
    assert decode_image(data, min_side=2000).scale == 1.0
    assert decode_image(encode(photo, "PNG"), min_side=500).scale == 1.0
