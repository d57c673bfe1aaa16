"""Config precedence and validation; run folders."""

import importlib

import pytest
import yaml

from inspekt.config import TrainConfig, build_config, parse_overrides, save_config
from inspekt.engine.runs import new_run_dir
from inspekt.errors import ConfigError


def test_precedence_defaults_yaml_options_overrides(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("task: classify\ndata: d\nepochs: 7\nlr: 0.1\nbatch: 4\n")
    cfg = build_config(TrainConfig, file=file, options={"epochs": 3, "lr": None}, overrides=["batch=9"])
    assert (cfg.epochs, cfg.lr, cfg.batch, cfg.imgsz) == (3, 0.1, 9, 128)


def test_nested_overrides_are_typed():
    assert parse_overrides(["model_params.width=8", "name=run1", "exist_ok=true"]) == {
        "model_params": {"width": 8},
        "name": "run1",
        "exist_ok": True,
    }


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["epoch=3"], "unknown config key 'epoch'.*Did you mean \"epochs\""),
        (["epochs=zero"], "config key 'epochs'.*got 'zero'"),
        (["epochs=0"], "config key 'epochs'.*greater than or equal to 1"),
        (["resize=squash"], "config key 'resize'"),
        (["epochs"], "not key=value"),
        # a union names its choices, not pydantic's member tags ('threshold.literal['auto']')
        (["threshold=best"], r"config key 'threshold' should be 'auto' or a valid number.*\(got 'best'\)"),
        (["class_weights.a=x"], r"config key 'class_weights' should be 'none' or 'auto' or a valid number.*at 'a'"),
    ],
)
def test_bad_overrides(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config(TrainConfig, options={"task": "classify", "data": "d"}, overrides=overrides)


def test_a_dotted_key_given_as_a_python_keyword_gets_the_python_form():
    with pytest.raises(ConfigError, match=r"nest it, model_params=\{'width': ...\} in Python"):
        build_config(TrainConfig, options={"task": "classify", "data": "d", "model_params.width": 4})
    with pytest.raises(ConfigError, match=r"unknown config key 'epochs.max'. Did you mean \"epochs\""):
        build_config(TrainConfig, options={"task": "classify", "data": "d", "epochs.max": 4})  # not a dict key


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        build_config(TrainConfig, file=tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        build_config(TrainConfig, file=tmp_path / "list.yaml")


def test_effective_config_round_trips(tmp_path):
    cfg = build_config(TrainConfig, options={"task": "classify", "data": "d"}, overrides=["epochs=2"])
    path = save_config(cfg, tmp_path / "config.yaml")
    assert build_config(TrainConfig, file=path) == cfg and yaml.safe_load(path.read_text())["epochs"] == 2


@pytest.mark.parametrize(
    "module, name, required, typo, key, bad",
    [
        ("inspekt.drift", "DriftConfig", {}, "alpah", "alpha", {"alpha": "x"}),
        ("inspekt.monitor", "MonitorConfig", {"model": "m", "source": "in/"}, "windw", "window", {"window": "x"}),
        ("inspekt.api", "ServeSettings", {"models": ("m",)}, "max_file", "max_files", {"max_files": "x"}),
    ],
)
def test_settings_classes_share_the_config_idiom(module, name, required, typo, key, bad):
    if module == "inspekt.api":
        pytest.importorskip("fastapi")
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(ConfigError, match=f"^unknown {name} key '{typo}'. Did you mean \"{key}\"\\?$"):
        cls(**required, **{typo: 1})
    [field] = bad
    with pytest.raises(ConfigError, match=f"^{name} key '{field}': .*got 'x'") as raised:
        cls(**required, **bad)
    assert raised.value.__suppress_context__  # one line, no pydantic ValidationError behind it


def test_settings_checks_raise_their_own_message():
    from inspekt.drift import DriftConfig

    with pytest.raises(ConfigError) as raised:
        DriftConfig(alpha=5)
    assert str(raised.value) == "alpha must be between 0 and 1 (e.g. 0.05), not 5.0"  # not wrapped by pydantic
    config = DriftConfig(checks=["pixels"])
    assert config.checks == ("pixels",) and config.model_copy(update={"seed": 3}).seed == 3
    with pytest.raises(ValueError, match="frozen"):
        config.seed = 1


def test_run_dirs_increment_unless_exist_ok(tmp_path):
    first = new_run_dir(tmp_path, "classify", "exp")
    second = new_run_dir(tmp_path, "classify", "exp")
    assert (first.name, second.name) == ("exp", "exp2")
    assert new_run_dir(tmp_path, "classify", "exp", exist_ok=True) == first
    with pytest.raises(ConfigError, match="may hold only"):
        new_run_dir(tmp_path, "classify", "../escape")


def test_model_params_decided_by_the_data_are_refused(synth_classes, tmp_path):
    from inspekt.engine.trainer import train

    cfg = build_config(
        TrainConfig,
        options={"task": "classify", "data": str(synth_classes), "out": str(tmp_path)},
        overrides=["model_params.num_classes=7"],
    )
    with pytest.raises(ConfigError, match="model_params.num_classes is set from the data"):
        train(cfg)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"width": "abc"}, "width='abc' is out of range"),
        ({"width": 0}, "width=0 is out of range"),
        ({"dropout": 2}, "dropout=2 is out of range"),
    ],
)
def test_bad_model_params_name_the_value(params, message):
    from inspekt.models import create_model

    with pytest.raises(ConfigError, match=message):
        create_model("tiny_cnn", num_classes=2, **params)


def test_run_dir_under_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="cannot create the run folder under .*afile"):
        new_run_dir(tmp_path / "afile", "classify")


def test_bad_model_params_fail_before_any_image_is_decoded(synth_classes, tmp_path, monkeypatch):
    from inspekt.engine import trainer as train_module
    from inspekt.tasks.classify import train as classify_train

    def no_decoding(*args, **kwargs):
        raise AssertionError("images were decoded before the model parameters were checked")

    monkeypatch.setattr(classify_train.ImageStore, "build", no_decoding)
    cfg = build_config(
        TrainConfig,
        options={"task": "classify", "data": str(synth_classes), "out": str(tmp_path)},
        overrides=["model_params.width=0"],
    )
    with pytest.raises(ConfigError, match="width=0 is out of range"):
        train_module.train(cfg)
    assert not (tmp_path / "classify").exists()  # no run folder for a run that never started


@pytest.mark.parametrize("override", ["lr=.nan", "lr=.inf", "quantile=.nan"])
def test_non_finite_config_values_are_refused(override):
    with pytest.raises(ConfigError, match=r"config key '(lr|quantile)'.*finite"):
        build_config(TrainConfig, options={"task": "classify", "data": "d"}, overrides=[override])


def test_json_output_never_holds_a_bare_nan(capsys):
    import json

    import numpy as np

    from inspekt.cli.common import print_json

    print_json({"score": float("nan"), "rows": [1.5, float("inf")], "n": 3, "map": np.array([np.float32("nan"), 2])})
    assert json.loads(capsys.readouterr().out) == {"score": None, "rows": [1.5, None], "n": 3, "map": [None, 2.0]}
