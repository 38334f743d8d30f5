"""dlib's CNN face detector (MMOD) run in onnxruntime, with dlib's own pre- and post-processing.

dlib runs its `loss_mmod` network once over a *tiled pyramid*: the image and its successive
5/6 downscales packed into one canvas (`create_tiled_pyramid`), scores every position of the
final feature map, keeps those above the threshold, maps each back through the convolutions
to a detector-window-sized box in the canvas and through its pyramid tile to the image
(`tiled_pyramid_to_image`), and drops boxes that overlap a stronger one (`test_box_overlap`).
This module reproduces those steps; the numbers they need come from the converted model's
metadata (see `serve_app.vision.convert.dlib_mmod`). The pyramid levels are resized with
dlib's own bilinear `resize_image` on float channels, as dlib's tt::resize_bilinear does, so
the network sees the same input tensor as in dlib.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np
import onnx

from serve_app.vision.convert.dlib_mmod import METADATA_KEY
from serve_app.vision.packs.onnx_embedder import create_session

# dlib stops the pyramid when a level would be shorter than this (compute_tiled_..._details).
_MIN_LEVEL_HEIGHT = 5

# A rectangle as dlib holds it: inclusive integer (left, top, right, bottom).
Rect = tuple[int, int, int, int]


@dataclass(frozen=True)
class MmodDetection:
    """One detection in image pixels: dlib's inclusive rectangle and the network's score."""

    left: int
    top: int
    right: int
    bottom: int
    score: float

    @property
    def width(self) -> int:
        return self.right - self.left + 1

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1


def _area(r: Rect) -> int:
    return max(0, r[2] - r[0] + 1) * max(0, r[3] - r[1] + 1)


def _intersect(a: Rect, b: Rect) -> Rect:
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def tiled_pyramid_rects(
    nr: int, nc: int, n: int, padding: int, outer_padding: int
) -> tuple[list[Rect], int, int]:
    """dlib's compute_tiled_image_pyramid_details: each level's place in the canvas.

    Returns the rectangles (level 0 = the image) and the canvas height and width.
    """
    rate = (n - 1.0) / n
    sizes = [(nc, nr)]
    while True:
        nr, nc = math.floor(rate * nr), math.floor(rate * nc)
        if nr * nc == 0 or nr < _MIN_LEVEL_HEIGHT:
            break
        sizes.append((nc, nr))
    w0, h0 = sizes[0]
    total_height = sum(h + padding for _, h in sizes) - 2 * padding
    height, prev_width = 0, 0
    for w, h in sizes:
        # The first column goes down until the next level fits beside the previous one.
        if w <= w0 - prev_width - padding and (height - h0) * 2 >= total_height - h0:
            break
        height += h + padding
        prev_width = w
    height -= padding
    canvas_h, canvas_w = height + 2 * outer_padding, w0 + 2 * outer_padding

    rects: list[Rect] = []
    y, i = outer_padding, 0
    while y < height + outer_padding and i < len(sizes):
        w, h = sizes[i]
        rects.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    # The rest go back up a second column on the right, bottom-aligned.
    while i < len(sizes):
        w, h = sizes[i]
        x1, y1 = outer_padding + w0 - 1, y - 1
        rect = (x1 - (w - 1), y1 - (h - 1), x1, y1)
        if _area(_intersect(rects[0], rect)) > 0:
            break
        rects.append(rect)
        y -= h + padding
        i += 1
    return rects, canvas_h, canvas_w


def build_tiled_pyramid(
    image: np.ndarray,
    channel_means: tuple[float, float, float],
    n: int,
    padding: int,
    outer_padding: int,
) -> tuple[np.ndarray, list[Rect]]:
    """dlib's input_rgb_image_pyramid::to_tensor: the (1, 3, H, W) float input tensor.

    As in dlib, the tensor is zero (the mean colour) where no level lies, level 0 is
    (pixel - mean) / 256, and each further level is a bilinear resize of the one above in
    that float space (no rounding back to 8 bits), one channel at a time.
    """
    rects, canvas_h, canvas_w = tiled_pyramid_rects(
        image.shape[0], image.shape[1], n, padding, outer_padding
    )
    tensor = np.zeros((1, 3, canvas_h, canvas_w), dtype=np.float32)
    if not rects:
        return tensor, rects
    means = np.asarray(channel_means, dtype=np.float32)
    levels = np.ascontiguousarray(
        np.transpose((image.astype(np.float32) - means) / np.float32(256.0), (2, 0, 1))
    )
    for i, (left, top, right, bottom) in enumerate(rects):
        if i:
            rows, cols = bottom - top + 1, right - left + 1
            levels = np.stack([dlib.resize_image(channel, rows, cols) for channel in levels])
        tensor[0, :, top : bottom + 1, left : right + 1] = levels
    return tensor, rects


def _nearest_rect(rects: list[Rect], x: float, y: float) -> int:
    """dlib's nearest_rect at the point (rounded as dlib's point conversion does)."""
    px, py = math.floor(x + 0.5), math.floor(y + 0.5)
    best, best_dist = 0, math.inf
    for i, (left, top, right, bottom) in enumerate(rects):
        if left <= px <= right and top <= py <= bottom:
            return i
        nx, ny = min(max(px, left), right), min(max(py, top), bottom)
        dist = math.hypot(nx - px, ny - py)
        if dist < best_dist:
            best, best_dist = i, dist
    return best


def _round(v: float) -> int:
    """drectangle -> rectangle: dlib rounds to nearest, halves away from zero (-12.5 -> -13)."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


class MmodDetector:
    """The converted MMOD network plus dlib's pyramid, box mapping and NMS."""

    def __init__(self, model: bytes | Path | str, threads: int = 0) -> None:
        proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(model)
        props = {p.key: p.value for p in proto.metadata_props}
        if METADATA_KEY not in props:
            raise ValueError("not a faceserve MMOD model (no detector metadata)")
        meta = json.loads(props[METADATA_KEY])
        self.channel_means: tuple[float, float, float] = tuple(meta["channel_means"])
        self.pyramid_n: int = meta["pyramid_n"]
        self.padding: int = meta["pyramid_padding"]
        self.outer_padding: int = meta["pyramid_outer_padding"]
        self.windows: list[tuple[int, int]] = [tuple(w) for w in meta["detector_windows"]]
        self.nms_iou: float = meta["nms_iou"]
        self.nms_covered: float = meta["nms_covered"]
        self.sx, self.ox, self.sy, self.oy = meta["feature_to_input"]
        self.session = create_session(proto.SerializeToString(), threads)

    @property
    def smallest_face(self) -> int:
        """The smallest box side the detector can output at the image's own scale."""
        return min(min(w, h) for w, h in self.windows)

    def _overlaps(self, a: Rect, b: Rect) -> bool:
        """dlib's test_box_overlap (its 'IoU' divides by the bounding box of the pair)."""
        inner = _area(_intersect(a, b))
        if inner == 0:
            return False
        outer = _area((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])))
        return (
            inner / outer > self.nms_iou
            or inner / _area(a) > self.nms_covered
            or inner / _area(b) > self.nms_covered
        )

    def scores(self, image: np.ndarray) -> tuple[np.ndarray, list[Rect]]:
        """The network's score maps over the tiled pyramid of `image`, and the tiles."""
        tensor, rects = build_tiled_pyramid(
            image, self.channel_means, self.pyramid_n, self.padding, self.outer_padding
        )
        out = self.session.run(None, {"tensor": tensor})[0]
        return out[0], rects

    def detect(self, image: np.ndarray, threshold: float = 0.0) -> list[MmodDetection]:
        """Faces in an RGB uint8 image, strongest first, as dlib's net(image) returns them.

        `threshold` is dlib's adjust_threshold: positions scoring above it are candidates.
        """
        if min(image.shape[:2]) < 1:
            return []
        maps, rects = self.scores(image)
        candidates: list[tuple[float, Rect]] = []
        for k, (win_w, win_h) in enumerate(self.windows):
            rows, cols = np.nonzero(maps[k] > threshold)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                # Feature position -> canvas point -> window-sized box (centered_drect).
                px, py = self.sx * c + self.ox, self.sy * r + self.oy
                hw, hh = (win_w - 1) / 2, (win_h - 1) / 2
                level = _nearest_rect(rects, px, py)
                left0, top0 = rects[level][0], rects[level][1]
                x0, y0, x1, y1 = px - hw - left0, py - hh - top0, px + hw - left0, py + hh - top0
                # Up the pyramid to the image: p * N/(N-1) + 0.3 per level (point_up).
                ratio = self.pyramid_n / (self.pyramid_n - 1.0)
                for _ in range(level):
                    x0, y0 = x0 * ratio + 0.3, y0 * ratio + 0.3
                    x1, y1 = x1 * ratio + 0.3, y1 * ratio + 0.3
                rect = (_round(x0), _round(y0), _round(x1), _round(y1))
                candidates.append((float(maps[k][r, c]), rect))
        candidates.sort(key=lambda item: item[0], reverse=True)
        kept: list[tuple[float, Rect]] = []
        for score, rect in candidates:
            if any(self._overlaps(other, rect) for _, other in kept):
                continue
            kept.append((score, rect))
        return [MmodDetection(*rect, score) for score, rect in kept]
