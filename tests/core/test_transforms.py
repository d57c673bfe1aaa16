"""Preprocessing from the card: shapes, channels, normalisation, and mapping results back."""

import numpy as np
import pytest

from inspekt.card import InputSpec
from inspekt.transforms import map_back, normalize, prepare, preprocess, preprocess_batch, resize, to_channels


def spec(policy="stretch", channels=1, size=(32, 48)):
    return InputSpec(size=size, channels=channels, mean=(0.5,) * channels, std=(0.25,) * channels, resize=policy)


@pytest.mark.parametrize("policy", ["stretch", "letterbox", "crop"])
@pytest.mark.parametrize("shape", [(100, 60), (60, 100), (32, 48), (7, 300)])
def test_resize_always_gives_input_size(policy, shape):
    out, _ = resize(np.zeros(shape, np.uint8), spec(policy))
    assert out.shape == (32, 48)


@pytest.mark.parametrize("policy", ["stretch", "letterbox", "crop"])
def test_map_back_aligns_a_spot_with_the_original(policy):
    image = np.zeros((120, 90), np.uint8)
    image[55:65, 40:50] = 255  # a bright square near the centre
    resized, geometry = resize(image, spec(policy, size=(64, 64)))
    back = map_back(resized.astype(np.float32), geometry)
    assert back.shape == image.shape
    peak = np.unravel_index(np.argmax(back), back.shape)
    assert 50 <= peak[0] <= 70 and 35 <= peak[1] <= 55


def test_letterbox_keeps_aspect_and_pads():
    out, geometry = resize(np.full((100, 50), 200, np.uint8), spec("letterbox", size=(64, 64)))
    assert geometry.left == 16 and out[:, :10].max() == 114 and out[:, 20:40].min() == 200


def test_channels_conversion():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = to_channels(grey, 3)
    assert rgb.shape == (3, 4, 3) and (rgb[..., 0] == grey).all()
    assert to_channels(rgb, 1).shape == (3, 4)
    with pytest.raises(ValueError, match="uint8"):
        to_channels(grey.astype(np.float32), 1)


def test_normalisation_values():
    x, _ = preprocess(np.full((10, 10), 255, np.uint8), spec(size=(8, 8)))
    assert x.shape == (1, 8, 8) and x.dtype == np.float32
    assert np.allclose(x, (1 - 0.5) / 0.25)


def test_batch_of_mixed_grey_and_colour():
    batch, geometries = preprocess_batch(
        [np.zeros((20, 30), np.uint8), np.zeros((40, 10, 3), np.uint8)], spec(channels=3, size=(16, 16))
    )
    assert batch.shape == (2, 3, 16, 16) and len(geometries) == 2


def test_clahe_is_part_of_the_card_preprocessing():
    rng = np.random.default_rng(0)
    dull = (100 + rng.integers(0, 20, (64, 80))).astype(np.uint8)  # low contrast
    plain = InputSpec(size=(32, 32), channels=1, mean=(0.5,), std=(0.25,))
    boosted = plain.model_copy(update={"clahe": 3.0})
    flat, _ = prepare(dull, plain)
    enhanced, _ = prepare(dull, boosted)
    assert enhanced.std() > 2 * flat.std()
    x, _ = preprocess(dull, boosted)
    assert np.allclose(x, normalize(enhanced, boosted))
    colour, _ = prepare(
        np.dstack([dull] * 3), boosted.model_copy(update={"channels": 3, "mean": (0.5,) * 3, "std": (0.25,) * 3})
    )
    assert colour.shape == (32, 32, 3) and colour.std() > 2 * flat.std()
