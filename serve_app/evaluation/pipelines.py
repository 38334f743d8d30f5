"""The pipelines `faceserve eval` compares: a model pack, and dlib's own plain pipeline."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from serve_app.config import ImageLimits
from serve_app.evaluation.lfw import Embedded, Embedding
from serve_app.vision.image import decode_image
from serve_app.vision.packs.base import ModelPack
from serve_app.vision.packs.dlib_r29 import RESNET_FILE, SHAPE_FILE, shipped_model_path
from serve_app.vision.types import BoundingBox


def centre_box(width: int, height: int) -> BoundingBox:
    """Where the face sits in an LFW crop (the same box dlib's HOG finds on most of them)."""
    side = 0.42 * min(width, height)
    return BoundingBox(width / 2 - side / 2, 0.56 * height - side / 2, side, side)


def _central(boxes: list[BoundingBox], width: int, height: int) -> int:
    """Index of the box whose centre is nearest the image centre (LFW's subject)."""

    def offset(b: BoundingBox) -> float:
        return (b.left + b.width / 2 - width / 2) ** 2 + (b.top + b.height / 2 - height / 2) ** 2

    return min(range(len(boxes)), key=lambda i: offset(boxes[i]))


def pack_pipeline(pack: ModelPack, limits: ImageLimits | None = None) -> Embedding:
    """The pack's own detect -> align -> embed path, as the service runs it."""

    def embed(path: Path) -> Embedded:
        started = time.perf_counter()
        image = decode_image(path.read_bytes(), limits).pixels
        height, width = image.shape[:2]
        faces = pack.detect(image)
        if faces:
            face, how = faces[_central([f.box for f in faces], width, height)], "detected"
        else:
            face, how = pack.locate(image, centre_box(width, height)), "fallback"
        vector = pack.embed([face])[0]
        return Embedded(vector, how, time.perf_counter() - started)

    return Embedding(f"faceserve {pack.model_version}", embed, lambda a, b: float(np.dot(a, b)))


def dlib_pipeline() -> Embedding:
    """dlib's documented pipeline: HOG (upsampled once), 5-point shapes, compute_face_descriptor,
    Euclidean distance. The same centre fallback when HOG misses, so only the models differ."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    shapes = dlib.shape_predictor(str(shipped_model_path(SHAPE_FILE)))
    resnet = dlib.face_recognition_model_v1(str(shipped_model_path(RESNET_FILE)))

    def embed(path: Path) -> Embedded:
        started = time.perf_counter()
        image = decode_image(path.read_bytes()).pixels
        height, width = image.shape[:2]
        rects = list(detector(image, 1))
        if rects:
            boxes = [BoundingBox(r.left(), r.top(), r.width(), r.height()) for r in rects]
            rect, how = rects[_central(boxes, width, height)], "detected"
        else:
            b = centre_box(width, height)
            rect = dlib.rectangle(
                round(b.left), round(b.top), round(b.left + b.width), round(b.top + b.height)
            )
            how = "fallback"
        descriptor = np.array(resnet.compute_face_descriptor(image, shapes(image, rect)))
        return Embedded(descriptor, how, time.perf_counter() - started)

    return Embedding(
        "dlib (dlib-bin, compute_face_descriptor)",
        embed,
        lambda a, b: -float(np.linalg.norm(a - b)),
    )
