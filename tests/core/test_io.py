"""Tests for inspekt.io.decode: every input is crafted here, in memory or under tmp_path."""

from __future__ import annotations

import io
import os
import struct
import sys
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, ImageOps

import inspekt.io.decode as iio
from inspekt.errors import ConfigError, DatasetError, ImageLoadError, InspektError, InspektWarning
from inspekt.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    image_size,
    iter_images,
    list_images,
    load_image,
    save_image,
)
from inspekt.results import BatchReport, SkippedFile

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


# --- builders ------------------------------------------------------------------------------


def encode(img: Image.Image | np.ndarray, fmt: str, **options: object) -> bytes:
    """Encode a Pillow image (or uint8 array) with Pillow."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def cv2_encode(array: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, array)
    assert ok
    return buf.tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose valid IHDR claims any size, followed by a tiny IDAT: nothing big is allocated."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 8))
        + png_chunk(b"IEND", b"")
    )


def solid(colour: tuple[int, ...] | int, size: tuple[int, int] = (6, 4), mode: str = "RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def marked(height: int = 4, width: int = 6) -> np.ndarray:
    """An RGB array with distinct colours in three corners, to follow rotations."""
    array = np.zeros((height, width, 3), np.uint8)
    array[0, 0] = RED
    array[0, -1] = GREEN
    array[-1, 0] = BLUE
    return array


def with_orientation(array: np.ndarray, orientation: int, fmt: str = "PNG", **options: object) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(array, fmt, exif=exif.tobytes(), **options)


def assert_load_error(source: object, label: str, *keywords: str, **kwargs: object) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_image(source, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{label}: "), message
    lowered = message.lower()
    assert any(k.lower() in lowered for k in keywords), message
    return message


@pytest.fixture()
def rgb_png() -> bytes:
    return encode(marked(), "PNG")


# --- sources -------------------------------------------------------------------------------


def test_sources_give_identical_arrays(tmp_path: Path, rgb_png: bytes) -> None:
    path = tmp_path / "img.png"
    path.write_bytes(rgb_png)
    expected = marked()
    results = [
        load_image(path),
        load_image(str(path)),
        load_image(rgb_png),
        load_image(bytearray(rgb_png)),
        load_image(memoryview(rgb_png)),
        load_image(io.BytesIO(rgb_png)),
    ]
    with open(path, "rb") as handle:
        results.append(load_image(handle))
    for result in results:
        assert result.dtype == np.uint8 and result.flags.c_contiguous and result.flags.writeable
        np.testing.assert_array_equal(result, expected)


def test_unknown_source_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="path, bytes or a binary file"):
        load_image(12345)  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "suggestion"), [("rgb", '"RGB"'), ("Keep", '"keep"'), ("RGBX", '"RGB"')])
def test_unknown_mode_suggests(rgb_png: bytes, mode: str, suggestion: str) -> None:
    with pytest.raises(ValueError, match=f"Did you mean {suggestion}"):
        load_image(rgb_png, mode)


@pytest.mark.parametrize("background", [(1, 2), (0, 0, 256), "white", None])
def test_bad_background(rgb_png: bytes, background: object) -> None:
    with pytest.raises(ValueError, match="background"):
        load_image(rgb_png, background=background)  # type: ignore[arg-type]


# --- modes and pixel formats ---------------------------------------------------------------


def test_modes_rgb_l_keep() -> None:
    red = encode(solid(RED), "PNG")
    assert load_image(red).shape == (4, 6, 3)
    luma = load_image(red, "L")
    assert luma.shape == (4, 6) and int(luma[0, 0]) == 76  # Pillow's ITU-R 601 luma of red
    assert load_image(red, "keep").shape == (4, 6, 3)
    grey = encode(solid(200, mode="L"), "PNG")
    assert load_image(grey, "keep").shape == (4, 6)
    np.testing.assert_array_equal(load_image(grey)[0, 0], [200, 200, 200])


def test_16bit_grey_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    out = load_image(data, "keep")
    assert out.shape == (1, 4)
    assert out.tolist() == [[0, 1, 128, 255]]


@pytest.mark.parametrize("ext", [".tif", ".pgm", ".png"])
def test_16bit_grey_via_other_containers(ext: str) -> None:
    values = np.array([[0, 128, 32896, 65535, 65407]], np.uint16)
    out = load_image(cv2_encode(values, ext), "L")
    assert out.tolist() == [[0, 0, 128, 255, 255]]


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_colour_uses_full_precision(ext: str) -> None:
    rgb = np.zeros((2, 3, 3), np.uint16)
    rgb[0, 0] = (65535, 32896, 384)  # Pillow alone would give 255, 128, 1 (high byte)
    rgb[1, 2] = (200, 65407, 0)
    out = load_image(cv2_encode(rgb[..., ::-1], ext))
    assert out[0, 0].tolist() == [255, 128, 1]
    assert out[1, 2].tolist() == [1, 255, 0]  # 200/257 rounds up; 65407/257 = 254.5... -> 255


def test_16bit_rgba_tiff_is_composited() -> None:
    rgba = np.zeros((1, 2, 4), np.uint16)
    rgba[0, 0] = (65535, 0, 0, 65535)  # opaque red
    rgba[0, 1] = (65535, 0, 0, 0)  # transparent
    out = load_image(cv2_encode(rgba[..., [2, 1, 0, 3]], ".tif"), background=(0, 0, 255))
    assert out[0].tolist() == [list(RED), list(BLUE)]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([[0, 1000, 65535]], [[0, 4, 255]]),  # fits 16 bit: value / 257
        ([[0, 500_000, 1_000_000]], [[0, 128, 255]]),  # larger: scaled by the maximum
        ([[-5, 0, 65535]], [[0, 0, 255]]),  # negatives clip to 0
    ],
)
def test_32bit_int_tiff(values: list[list[int]], expected: list[list[int]]) -> None:
    img = Image.fromarray(np.array(values, np.int32))
    assert img.mode == "I"
    assert load_image(encode(img, "TIFF"), "keep").tolist() == expected


def test_float_tiff_in_unit_range_is_multiplied() -> None:
    img = Image.fromarray(np.array([[0.0, 0.5, 1.0, np.nan]], np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InspektWarning)
        out = load_image(encode(img, "TIFF"), "keep")
    assert out.tolist() == [[0, 128, 255, 0]]


def test_float_tiff_out_of_range_is_min_max_normalised_with_warning() -> None:
    img = Image.fromarray(np.array([[-10.0, 0.0, 10.0, np.inf]], np.float32))
    with pytest.warns(InspektWarning, match="min-max"):
        out = load_image(encode(img, "TIFF"), "L")
    assert out.tolist() == [[0, 128, 255, 128]]  # inf counts as 0


def test_constant_float_image_out_of_range() -> None:
    img = Image.fromarray(np.full((2, 2), 7.5, np.float32))
    with pytest.warns(InspektWarning):
        assert load_image(encode(img, "TIFF"), "keep").tolist() == [[0, 0], [0, 0]]


def test_rgba_png_composited_over_background() -> None:
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    rgba[0, 1] = (255, 0, 0, 0)
    rgba[0, 2] = (255, 0, 0, 128)
    data = encode(rgba, "PNG")
    out = load_image(data)
    assert out[0, 0].tolist() == list(RED)
    assert out[0, 1].tolist() == list(WHITE)  # documented default background
    assert out[0, 2].tolist() == [255, 127, 127]
    black = load_image(data, background=BLACK)
    assert black[0, 1].tolist() == list(BLACK) and black[0, 2].tolist() == [128, 0, 0]


def test_la_png_composited_and_kept_grey() -> None:
    la = np.array([[[10, 255], [10, 0]]], np.uint8)
    out = load_image(encode(Image.fromarray(la, "LA"), "PNG"), "keep", background=(50, 50, 50))
    assert out.shape == (1, 2) and out.tolist() == [[10, 50]]


def test_palette_png_with_transparency() -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    out = load_image(encode(img, "PNG", transparency=1), background=BLUE)
    assert out.tolist() == [[list(RED), list(BLUE)]]
    plain = load_image(encode(img, "PNG"))
    assert plain.tolist() == [[list(RED), list(GREEN)]]


def test_gif_transparency_and_first_frame() -> None:
    frames = [solid(RED), solid(GREEN), solid(BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    out = load_image(data)
    assert out.shape == (4, 6, 3) and (out == RED).all()


def test_animated_webp_first_frame() -> None:
    frames = [solid(GREEN), solid(RED)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert (load_image(data) == GREEN).all()


@pytest.mark.parametrize("fmt", ["BMP", "WEBP", "PPM", "TIFF", "PNG"])
def test_lossless_formats_round_trip(fmt: str) -> None:
    options = {"lossless": True} if fmt == "WEBP" else {}
    np.testing.assert_array_equal(load_image(encode(marked(), fmt, **options)), marked())


def test_jpeg_is_close() -> None:
    out = load_image(encode(solid(RED, (16, 16)), "JPEG", quality=95))
    assert np.abs(out.astype(int) - RED).max() <= 3


def test_cmyk_tiff_pure_cyan_and_red() -> None:
    img = Image.new("CMYK", (2, 1))
    img.putpixel((0, 0), (255, 0, 0, 0))  # cyan ink
    img.putpixel((1, 0), (0, 255, 255, 0))  # magenta + yellow = red
    out = load_image(encode(img, "TIFF"))
    assert out.tolist() == [[[0, 255, 255], list(RED)]]


def test_cmyk_jpeg_pure_red() -> None:
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    out = load_image(data)
    assert np.abs(out.astype(int) - RED).max() <= 3


def test_one_bit_image() -> None:
    img = Image.new("1", (3, 1))
    img.putpixel((1, 0), 1)
    for fmt in ("PNG", "PPM", "TIFF", "BMP"):
        data = encode(img, fmt)
        assert load_image(data, "keep").tolist() == [[0, 255, 0]], fmt
        assert load_image(data).shape == (1, 3, 3)


def test_ycbcr_tiff() -> None:
    data = encode(solid(RED).convert("YCbCr"), "TIFF")
    assert np.abs(load_image(data).astype(int) - RED).max() <= 3


def test_multipage_tiff_warns_and_returns_page_one(tmp_path: Path) -> None:
    path = tmp_path / "stack.tif"
    solid(RED).save(path, save_all=True, append_images=[solid(GREEN), solid(BLUE)])
    with pytest.warns(InspektWarning, match=r"stack\.tif.*3 pages"):
        out = load_image(path)
    assert (out == RED).all()


# --- EXIF orientation ----------------------------------------------------------------------


def test_exif_orientation_6_rotates_jpeg() -> None:
    array = np.zeros((16, 32, 3), np.uint8)
    array[:8, :8] = RED  # top-left block as stored
    out = load_image(with_orientation(array, 6, "JPEG", quality=100, subsampling=0))
    assert out.shape == (32, 16, 3)
    # Orientation 6 = rotate 90 degrees clockwise: the stored top-left ends top-right.
    assert np.abs(out[0, -1].astype(int) - RED).max() <= 8
    assert out[0, 0].max() <= 8


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(orientation: int) -> None:
    data = with_orientation(marked(3, 5), orientation)
    expected = np.array(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    np.testing.assert_array_equal(load_image(data), expected)
    height, width = expected.shape[:2]
    assert image_size(data) == (width, height)


def test_image_size_header_only() -> None:
    # 120 M pixels would be refused by load_image; the header alone is fine.
    assert image_size(png_header_only(12000, 10000)) == (12000, 10000)
    assert image_size(io.BytesIO(encode(marked(), "BMP"))) == (6, 4)
    assert image_size(with_orientation(marked(), 6, "JPEG")) == (4, 6)
    assert image_size(with_orientation(marked(), 3, "JPEG")) == (6, 4)


@pytest.mark.parametrize(
    ("data", "keyword"),
    [(b"", "empty"), (b"hello", "not an image"), (PNG_SIGNATURE, "corrupt")],
)
def test_image_size_errors(data: bytes, keyword: str) -> None:
    with pytest.raises(ImageLoadError, match=keyword):
        image_size(data)


def test_image_size_missing(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="file not found"):
        image_size(tmp_path / "nope.png")


# --- failures --------------------------------------------------------------------------------


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _noisy(fmt: str, **options: object) -> bytes:
    rng = np.random.default_rng(0)
    return encode(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8), fmt, **options)


def _bad_crc_png() -> bytes:
    good = encode(marked(), "PNG")
    return good[:29] + bytes([good[29] ^ 0xFF]) + good[30:]  # last byte of the IHDR CRC


BAD_BYTES = {
    "truncated PNG": (_half(_noisy("PNG")), ("truncated",)),
    "truncated JPEG": (_half(_noisy("JPEG")), ("truncated",)),
    "truncated GIF": (_half(_noisy("GIF")), ("truncated", "corrupt")),
    "truncated BMP": (_half(_noisy("BMP")), ("truncated",)),
    "truncated TIFF": (_half(_noisy("TIFF")), ("truncated",)),
    "truncated WebP": (_half(_noisy("WEBP")), ("corrupt",)),
    "truncated PPM": (_half(_noisy("PPM")), ("truncated",)),
    "PNG signature only": (PNG_SIGNATURE, ("corrupt",)),
    "PNG header without pixels": (png_header_only(64, 64), ("truncated",)),
    "PNG bad CRC": (_bad_crc_png(), ("checksum",)),
    "PNG zero width": (png_header_only(0, 10), ("zero-sized", "corrupt")),
    "JPEG SOI only": (b"\xff\xd8\xff", ("corrupt",)),
    "TIFF magic only": (b"II*\x00\x08\x00\x00\x00", ("corrupt",)),
    "BMP magic only": (b"BM", ("corrupt",)),
    "PGM zero size": (b"P5 0 10 255\n", ("corrupt", "zero-sized")),
    "text": (b"just some text, not pixels\n", ("not an image file (unrecognised content)",)),
    "HTML error page": (b"<!DOCTYPE html><html><body>404</body></html>", ("html",)),
    "random bytes": (np.random.default_rng(1).bytes(512), ("not an image",)),
    "NUL bytes": (bytes(100), ("not an image",)),
    "PDF header": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", ("unsupported format PDF",)),
    "HEIC header": (
        b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(40),
        ("unsupported format HEIF",),
    ),
    "ICO": (encode(solid(RED, (16, 16)), "ICO"), ("unsupported format ICO",)),
    "EPS": (encode(solid(RED, (8, 8)), "EPS"), ("unsupported format EPS",)),
    "TGA": (encode(solid(RED, (8, 8)), "TGA"), ("unsupported format TGA",)),
    "bomb header": (png_header_only(100_000, 100_000), ("max_pixels=", "pillow's hard limit")),
    "above default limit": (png_header_only(12_000, 10_000), ("max_pixels=",)),
}


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's, for the bare TIFF header
@pytest.mark.parametrize("name", sorted(BAD_BYTES))
def test_bad_bytes(name: str) -> None:
    data, keywords = BAD_BYTES[name]
    assert_load_error(data, f"<bytes, {len(data)} B>", *keywords)


def test_a_corrupt_image_says_what_to_do_without_python_s_exception_names(tmp_path, monkeypatch) -> None:
    message = assert_load_error(_half(_noisy("PNG")), f"<bytes, {len(_half(_noisy('PNG')))} B>", "truncated")
    assert "OSError" not in message and message.endswith("copy or export the file again")
    monkeypatch.setenv("HOME", str(tmp_path))  # "~/x" typed in the workbench, or quoted on a command line
    (tmp_path / "a.png").write_bytes(_noisy("PNG"))
    assert load_image("~/a.png").shape == load_image(tmp_path / "a.png").shape


def test_truncated_jpeg_is_detected_not_padded() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = _noisy("JPEG")
    with pytest.raises(OSError, match="truncated"):
        Image.open(io.BytesIO(_half(data))).load()  # Pillow itself refuses, no grey padding
    assert_load_error(_half(data), f"<bytes, {len(data) // 2} B>", "image file is truncated")


def test_bomb_does_not_touch_pillow_globals_or_warn() -> None:
    before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message = assert_load_error(png_header_only(12_000, 10_000), "<bytes, 68 B>", "120,000,000")
    for expected in ("12000 x 10000", "100,000,000", "INSPEKT_MAX_PIXELS", "max_pixels="):
        assert expected in message
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert Image.MAX_IMAGE_PIXELS == before
    assert DEFAULT_MAX_PIXELS == 100_000_000


def test_max_pixels_per_call_and_env(monkeypatch: pytest.MonkeyPatch, rgb_png: bytes) -> None:
    label = f"<bytes, {len(rgb_png)} B>"
    message = assert_load_error(rgb_png, label, "limit of 10 pixels", max_pixels=10)
    assert "6 x 4 = 24 pixels" in message
    monkeypatch.setenv("INSPEKT_MAX_PIXELS", "23")
    assert_load_error(rgb_png, label, "limit of 23 pixels")
    assert load_image(rgb_png, max_pixels=24).shape == (4, 6, 3)  # per call wins
    monkeypatch.setenv("INSPEKT_MAX_PIXELS", "24")
    assert load_image(rgb_png).shape == (4, 6, 3)
    monkeypatch.setenv("INSPEKT_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="INSPEKT_MAX_PIXELS"):
        load_image(rgb_png)


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "10"])
def test_bad_max_pixels(rgb_png: bytes, value: object) -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(rgb_png, max_pixels=value)  # type: ignore[arg-type]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.png"
    assert_load_error(path, str(path), "file not found")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "images.png"
    folder.mkdir()
    assert_load_error(folder, str(folder), "not a folder")


def test_empty_sources(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    assert_load_error(path, str(path), "empty file (0 bytes)")
    assert_load_error(b"", "<bytes, 0 B>", "empty file")
    assert_load_error(io.BytesIO(), "<stream>", "empty file")


def test_text_named_png_path_and_handle(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are notes, not an image\n")
    assert_load_error(path, str(path), "not an image file (unrecognised content)")
    with open(path, "rb") as handle:
        assert_load_error(handle, str(path), "not an image file")


def test_text_mode_stream() -> None:
    assert_load_error(io.StringIO("abc"), "<stream>", "text mode")


def test_stream_read_error() -> None:
    class Broken(io.RawIOBase):
        name = "camera://7"

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            raise OSError("device disconnected")

    assert_load_error(Broken(), "camera://7", "device disconnected")


def test_permission_denied(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rgb_png: bytes) -> None:
    path = tmp_path / "locked.png"
    path.write_bytes(rgb_png)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(iio, "open", refuse, raising=False)
    assert_load_error(path, str(path), "permission denied")


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads anything")
def test_permission_denied_for_real(tmp_path: Path, rgb_png: bytes) -> None:
    path = tmp_path / "locked.png"
    path.write_bytes(rgb_png)
    path.chmod(0)
    try:
        assert_load_error(path, str(path), "permission denied")
    finally:
        path.chmod(0o644)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    assert_load_error(fifo, str(fifo), "not a regular file")


def test_error_chains_the_cause() -> None:
    with pytest.raises(ImageLoadError) as info:
        load_image(_half(_noisy("PNG")))
    assert isinstance(info.value.__cause__, Exception)
    assert isinstance(info.value, ValueError) and isinstance(info.value, InspektError)


def test_newline_in_path_keeps_message_one_line(tmp_path: Path) -> None:
    path = tmp_path / "two\nlines.png"
    assert_load_error(path, str(path).replace("\n", "\\n"), "file not found")


# --- fuzzing -----------------------------------------------------------------------------------


def _seed_files() -> list[bytes]:
    rng = np.random.default_rng(2)
    array = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    rgba = np.dstack([array, rng.integers(0, 256, (12, 10), dtype=np.uint8)])
    return [
        encode(array, "PNG"),
        encode(rgba, "PNG"),
        encode(array, "JPEG"),
        encode(array, "BMP"),
        encode(array, "GIF"),
        encode(array, "TIFF"),
        encode(array, "WEBP"),
        encode(array, "PPM"),
        with_orientation(array, 6, "JPEG"),
        cv2_encode(np.arange(120, dtype=np.uint16).reshape(12, 10) * 500, ".tif"),
        cv2_encode((np.arange(360, dtype=np.uint16).reshape(12, 10, 3) * 150), ".png"),
    ]


SEEDS = _seed_files()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "overwrite", "truncate", "insert", "delete"]))
        where = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif action == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[where : where + len(chunk)] = chunk
        elif action == "truncate":
            del data[where:]
        elif action == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[where : where + draw(st.integers(1, 16))]
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(st.binary(max_size=512), mutated_images()),
    mode=st.sampled_from(["RGB", "L", "keep"]),
)
def test_fuzz_only_image_load_error_escapes(data: bytes, mode: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow and we warn about odd but readable files
        try:
            out = load_image(data, mode, max_pixels=1_000_000)
        except ImageLoadError as exc:
            assert "\n" not in str(exc)
            return
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    assert out.ndim == {"RGB": 3, "L": 2, "keep": out.ndim}[mode]
    assert out.ndim == 2 or out.shape[2] == 3


# --- batches, listing, saving --------------------------------------------------------------


def test_iter_images_skips_and_reports(tmp_path: Path, rgb_png: bytes) -> None:
    good = tmp_path / "a.png"
    good.write_bytes(rgb_png)
    empty = tmp_path / "b.png"
    empty.touch()
    cut = tmp_path / "c.jpg"
    cut.write_bytes(_half(_noisy("JPEG")))
    missing = tmp_path / "d.png"
    report = BatchReport()
    sources = [good, empty, rgb_png, cut, missing]
    results = list(iter_images(sources, "L", report=report))
    assert [name for name, _ in results] == [str(good), f"<bytes, {len(rgb_png)} B>"]
    assert all(array.shape == (4, 6) for _, array in results)
    assert report.loaded == 2
    assert report.skipped[0] == SkippedFile(str(empty), "empty file (0 bytes)")
    assert [s.path for s in report.skipped] == [str(empty), str(cut), str(missing)]
    assert "truncated" in report.skipped[1].reason and report.skipped[2].reason == "file not found"
    summary = report.summary()
    assert summary.splitlines()[0] == "loaded 2 images, skipped 3:"
    assert f"  {empty}: empty file (0 bytes)" in summary.splitlines()


def test_iter_images_without_report_warns_once(rgb_png: bytes) -> None:
    with pytest.warns(InspektWarning, match="loaded 1 image, skipped 1"):
        assert len(list(iter_images([rgb_png, b"junk"]))) == 1


def test_iter_images_validates_eagerly() -> None:
    with pytest.raises(ValueError, match="Did you mean"):
        iter_images([], "rbg")
    assert BatchReport().summary() == "loaded 0 images, skipped 0"


def test_list_images(tmp_path: Path) -> None:
    for name in [
        "b.PNG",
        "a.jpg",
        "notes.txt",
        ".hidden.png",
        "sub/c.tiff",
        "sub/deep/d.webp",
        ".cache/e.png",
        "sub/.f.bmp",
        "g.jpeg.bak",
    ]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")  # listing must not decode
    (tmp_path / "dir.png").mkdir()
    found = list_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.jpg",
        "b.PNG",
        "sub/c.tiff",
        "sub/deep/d.webp",
    ]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.jpg", "b.PNG"]
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"} <= IMAGE_EXTENSIONS
    with pytest.raises(DatasetError, match="folder not found"):
        list_images(tmp_path / "nope")
    with pytest.raises(DatasetError, match="not a folder"):
        list_images(tmp_path / "a.jpg")


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".PNG"])
def test_save_round_trip_lossless(tmp_path: Path, suffix: str) -> None:
    path = save_image(tmp_path / "deep" / "er" / f"out{suffix}", marked())
    assert isinstance(path, Path) and path.is_file()
    np.testing.assert_array_equal(load_image(path), marked())
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_save_grey_rgba_and_jpeg(tmp_path: Path) -> None:
    grey = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    np.testing.assert_array_equal(load_image(save_image(tmp_path / "g.pgm", grey), "keep"), grey)
    single = save_image(tmp_path / "g1.png", grey[..., None])
    np.testing.assert_array_equal(load_image(single, "keep"), grey)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    out = load_image(save_image(tmp_path / "a.png", rgba))
    assert out[0, 0].tolist() == list(RED) and out[1, 1].tolist() == list(WHITE)
    jpeg = load_image(save_image(tmp_path / "r.jpg", np.full((8, 8, 3), RED, np.uint8)))
    assert np.abs(jpeg.astype(int) - RED).max() <= 3


@pytest.mark.parametrize(
    ("name", "array", "error", "match"),
    [
        ("x.pgn", np.zeros((2, 2), np.uint8), ImageLoadError, 'Did you mean ".png"'),
        ("x", np.zeros((2, 2), np.uint8), ImageLoadError, "suffix"),
        ("x.pdf", np.zeros((2, 2), np.uint8), ImageLoadError, "supported"),
        ("x.png", np.zeros((2, 2), np.float32), ValueError, "uint8"),
        ("x.png", [[0, 1]], ValueError, "uint8"),
        ("x.png", np.zeros((2, 2, 2), np.uint8), ValueError, "shape"),
        ("x.png", np.zeros((0, 2), np.uint8), ValueError, "shape"),
        ("x.png", np.zeros((2, 2, 3, 1), np.uint8), ValueError, "shape"),
        ("x.jpg", np.zeros((2, 2, 4), np.uint8), ValueError, "alpha"),
        ("x.pgm", np.zeros((2, 2, 3), np.uint8), ValueError, "greyscale"),
    ],
)
def test_save_errors(tmp_path: Path, name: str, array: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        save_image(tmp_path / name, array)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_save_write_failure_is_inspekt_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(InspektError, match="cannot write image"):
        save_image(blocker / "out.png", np.zeros((2, 2), np.uint8))
