"""ModelCard: versioned schema, validation with messages that name the key and the fix."""

import json

import pytest

from inspekt.card import SCHEMA, InputSpec, ModelCard, parse_card, positive_class
from inspekt.errors import BundleError


def make_card(**changes) -> ModelCard:
    base = dict(
        task="classify",
        architecture="tiny_cnn",
        params={"num_classes": 2},
        classes=("ok", "nok"),
        input=InputSpec(size=(32, 32), channels=1, mean=(0.5,), std=(0.2,)),
    )
    return ModelCard(**(base | changes))


def test_round_trip_keeps_every_field():
    card = make_card(
        thresholds={"nok": 0.7},
        metrics={"val_macro_f1": 0.9},
        precision="int8",
        input=InputSpec(size=(32, 48), channels=1, mean=(0.5,), std=(0.2,), clahe=2.0),
    )
    again = parse_card(card.to_json())
    assert again == card
    assert json.loads(card.to_json())["schema"] == SCHEMA


@pytest.mark.parametrize(
    "thresholds, message",
    [
        ({"score": 0.5}, "'score' is not one of the classes"),
        ({"nok": 1.5}, "must be a probability"),
    ],
)
def test_bad_thresholds_are_refused(thresholds, message):
    raw = json.loads(make_card().to_json()) | {"thresholds": thresholds}
    with pytest.raises(BundleError, match=message):
        parse_card(json.dumps(raw))


def test_positive_class_is_the_one_that_is_not_normal():
    assert positive_class(("nok", "ok")) == "nok"
    assert positive_class(("Free", "Crack")) == "Crack"
    assert positive_class(("cat", "dog")) == "dog"


def test_unknown_key_gets_did_you_mean():
    raw = json.loads(make_card().to_json()) | {"clases": ["a"]}
    with pytest.raises(BundleError, match=r"unknown card key 'clases'.*Did you mean \"classes\""):
        parse_card(json.dumps(raw), where="m/card.json")


def test_unknown_task_names_known_ones():
    from inspekt.errors import ConfigError
    from inspekt.tasks import get_task

    raw = json.loads(make_card().to_json()) | {"task": "clasify"}
    assert parse_card(json.dumps(raw)).task == "clasify"  # the card's schema; the task registry judges the name
    with pytest.raises(ConfigError, match=r"unknown task 'clasify'.*classify, segment, anomaly.*Did you mean"):
        get_task("clasify")


def test_newer_schema_is_refused_with_upgrade_advice():
    raw = json.loads(make_card().to_json()) | {"schema": "inspekt.card/v9"}
    with pytest.raises(BundleError, match="newer than this inspekt.*upgrade"):
        parse_card(json.dumps(raw))


@pytest.mark.parametrize(
    "text, reason",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"schema": "something/v1"}', "not an inspekt model card"),
    ],
)
def test_malformed_cards(text, reason):
    with pytest.raises(BundleError, match=reason):
        parse_card(text, where="x/card.json")


def test_mean_must_match_channels():
    with pytest.raises(ValueError, match="mean needs 3 value"):
        InputSpec(size=(32, 32), channels=3, mean=(0.5,), std=(0.2, 0.2, 0.2))


def test_missing_key_named():
    raw = json.loads(make_card().to_json())
    del raw["architecture"]
    with pytest.raises(BundleError, match="'architecture'"):
        parse_card(json.dumps(raw))


@pytest.mark.parametrize(("key", "value"), [("mean", "NaN"), ("std", "Infinity")], ids=["nan-mean", "inf-std"])
def test_non_finite_numbers_in_a_card_are_refused_naming_the_key(key, value):
    raw = json.loads(make_card().to_json())
    raw["input"][key] = [float(value)]
    text = json.dumps(raw)  # json writes NaN / Infinity, as a hand-edited or corrupted card.json may hold
    assert value in text
    with pytest.raises(BundleError, match=rf"m/card.json: card key 'input.{key}.0'.*finite"):
        parse_card(text, where="m/card.json")
