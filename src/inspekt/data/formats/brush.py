"""Label Studio's brush RLE: a bit-packed run-length code of the mask as RGBA bytes (height x width x 4,
row-major; the alpha channel holds the mask).

The bit stream, most significant bit first, as Label Studio documents it (after thi.ng's rle-pack):

- header: the number of values (32 bits), the word size minus 1 (5 bits), then four run-length field
  widths, each minus 1 (4 bits each);
- chunks until every value is produced: a flag bit (1: one word repeated, 0: literal words), 2 bits
  choosing one of the four field widths, the count minus 1 in that many bits, then the repeated
  word or ``count`` literal words.
"""

from __future__ import annotations

import numpy as np

from inspekt.errors import DatasetError

WORD_BITS = 8
LENGTH_BITS = (3, 4, 8, 16)  # the four run-length field widths the encoder writes


class _Bits:
    """Reads unsigned integers of any width from a byte string, most significant bit first."""

    def __init__(self, data: bytes) -> None:
        self.text = "".join(f"{b:08b}" for b in data)
        self.pos = 0

    def read(self, width: int) -> int:
        if self.pos + width > len(self.text):
            raise DatasetError("brush RLE ends early (truncated or not Label Studio's rle); export the task again")
        value = int(self.text[self.pos : self.pos + width], 2)
        self.pos += width
        return value


def decode(rle: list[int] | bytes, height: int, width: int) -> np.ndarray:
    """An HxW uint8 mask (the alpha channel) from Label Studio's ``rle`` list.

    Raises:
        DatasetError: the code is truncated or does not hold height x width x 4 values.
    """
    bits = _Bits(bytes(rle))
    total = bits.read(32)
    if total != height * width * 4:
        raise DatasetError(f"brush RLE holds {total} values, not {height}x{width}x4; original_width/height mismatch")
    word = bits.read(5) + 1
    widths = [bits.read(4) + 1 for _ in range(4)]
    out = np.zeros(total, dtype=np.uint8)
    i = 0
    while i < total:
        repeated = bits.read(1)
        count = bits.read(widths[bits.read(2)]) + 1
        end = min(total, i + count)
        if repeated:
            out[i:end] = bits.read(word)
        else:
            out[i:end] = [bits.read(word) for _ in range(end - i)]
        i = end
    return out.reshape(height, width, 4)[..., 3]


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(value, length) of each run of equal values."""
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    lengths = np.diff(np.r_[starts, len(values)])
    return values[starts], lengths


def encode(mask: np.ndarray) -> list[int]:
    """Label Studio's ``rle`` list for an HxW mask (non-zero pixels become 255 in every RGBA channel).
    Every run is one repeat chunk (runs are at least 4 long, as each pixel gives 4 equal values)."""
    values = np.repeat(np.where(mask > 0, 255, 0).astype(np.uint8).ravel(), 4)
    parts = [f"{len(values):032b}", f"{WORD_BITS - 1:05b}", *(f"{w - 1:04b}" for w in LENGTH_BITS)]
    largest = 1 << LENGTH_BITS[-1]
    for value, length in zip(*_runs(values)):
        length = int(length)
        while length:
            count = min(length, largest)
            choice = next(k for k, w in enumerate(LENGTH_BITS) if count - 1 < 1 << w)
            parts.append(f"1{choice:02b}{count - 1:0{LENGTH_BITS[choice]}b}{int(value):0{WORD_BITS}b}")
            length -= count
    text = "".join(parts)
    text += "0" * (-len(text) % 8)
    return list(int(text, 2).to_bytes(len(text) // 8, "big"))
