"""A reader for dlib's binary serialization format, as used by its DNN model files.

dlib writes integers as a control byte (low nibble: byte count, bit 7: sign) followed by
little-endian bytes; strings as a length then raw bytes; scalars `float`s as a mantissa and a
base-2 exponent (two such integers); tensors (version 2) as four dimensions followed by raw
little-endian float32 data; booleans as the characters '0' / '1'.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class DlibFormatError(ValueError):
    """The file is not the dlib model we expect (or is corrupt)."""


class DlibReader:
    """Sequential reader over the bytes of a dlib-serialized object."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self._data):
            raise DlibFormatError(f"unexpected end of file at byte {self.pos}")
        chunk = self._data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def peek(self, n: int = 1) -> bytes:
        return self._data[self.pos : self.pos + n]

    def read_int(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8:
            raise DlibFormatError(f"bad integer control byte {control:#x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def read_str(self) -> str:
        length = self.read_int()
        if not 0 <= length < 1 << 16:
            raise DlibFormatError(f"implausible string length {length} at byte {self.pos}")
        return self._take(length).decode("latin-1")

    def expect_str(self, *allowed: str) -> str:
        start = self.pos
        value = self.read_str()
        if value not in allowed:
            raise DlibFormatError(
                f"expected {' or '.join(allowed)} at byte {start}, found {value!r}"
            )
        return value

    def read_float(self) -> float:
        mantissa = self.read_int()
        exponent = self.read_int()
        specials = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}
        if exponent in specials:
            return specials[exponent]
        return float(mantissa) * 2.0**exponent

    def read_bool(self) -> bool:
        char = self._take(1)
        if char not in (b"0", b"1"):
            raise DlibFormatError(f"expected a serialized bool at byte {self.pos - 1}")
        return char == b"1"

    def read_tensor(self) -> np.ndarray:
        """A `resizable_tensor`: returns float32 data shaped (num_samples, k, nr, nc)."""
        version = self.read_int()
        if version != 2:
            raise DlibFormatError(f"unsupported tensor serialization version {version}")
        shape = tuple(self.read_int() for _ in range(4))
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        """An `alias_tensor`: only its shape is stored; data lives in the layer's params."""
        version = self.read_int()
        if version != 1:
            raise DlibFormatError(f"unsupported alias_tensor version {version}")
        return tuple(self.read_int() for _ in range(4))  # type: ignore[return-value]

    def read_conv(self) -> ConvParams:
        """A `con_` layer's body (after its name): float32 filters (out, in, nr, nc), bias,
        stride and padding (each (y, x)). dlib stores filters and bias in one params tensor."""
        params = self.read_tensor().reshape(-1)
        num_filters, nr, nc = self.read_int(), self.read_int(), self.read_int()
        stride = (self.read_int(), self.read_int())
        padding = (self.read_int(), self.read_int())
        filt_shape = self.read_alias_tensor()
        bias_shape = self.read_alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers: training only
            self.read_float()
        if filt_shape[0] != num_filters or filt_shape[2:] != (nr, nc):
            raise DlibFormatError(f"con_ filter shape {filt_shape} disagrees with its header")
        n_w = int(np.prod(filt_shape))
        weights = params[:n_w].reshape(filt_shape)
        bias = params[n_w : n_w + int(np.prod(bias_shape))]
        return ConvParams(weights, bias, stride, padding)


class ConvParams(NamedTuple):
    weights: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]
