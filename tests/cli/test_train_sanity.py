"""A model that learned nothing is never silent (issue 19): on strongly imbalanced data the balanced
sampler is the default, and a run whose validation predictions collapse to one class warns, says so
in its card (``card.sanity``) and is never a default model (``passed_sanity``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from test_cli import cli

from inspekt.bundle import open_bundle
from inspekt.card import passed_sanity

# 192 "ok" against 10 "scratch" training images (19:1): with a plain shuffle this tiny network predicts
# "ok" for every image after 2 epochs; oversampling the scratches, it finds them.
FAST = ["--epochs", "2", "--imgsz", "32", "--batch", "16", "--lr", "0.005"]
FAST += ["augment=none", "model_params.width=8", "threads=1", "warmup_epochs=0"]


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory) -> Path:
    from inspekt.data.synth import write_dataset

    root = write_dataset(tmp_path_factory.mktemp("imbalanced") / "data", n=960, size=32, seed=3).root
    for name in ("pore", "lop"):
        shutil.rmtree(root / name)
    for extra in sorted((root / "scratch").iterdir())[12:]:
        extra.unlink()
    return root


def _train(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return cli("train", "classify", "--data", data, "--out", out, *FAST, *extra)


def test_a_collapsed_model_warns_and_is_marked_failed(imbalanced, tmp_path):
    proc = _train(imbalanced, tmp_path, "--sampler", "shuffle", "--json")  # JSON on stdout, warnings on stderr
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning: training failed its sanity")]
    assert warning and "predicts 'ok' for every validation image" in warning[0], proc.stderr
    result = json.loads(proc.stdout)
    assert result["sanity"]["ok"] is False and "at chance" in result["sanity"]["why"]
    card = open_bundle(result["bundle"]).card
    assert card.sanity is not None and not card.sanity.ok and "every validation image" in card.sanity.why
    assert any("sanity" in note for note in card.notes) and not passed_sanity(card)
    for command in (["predict", result["bundle"], imbalanced / "ok"], ["eval", result["bundle"], "--data", imbalanced]):
        used = cli(*command)  # every later use says so too, before its results
        assert f"warning: {result['bundle']} failed its training's sanity check:" in " ".join(used.stderr.split())
    judged = cli("data", "issues", imbalanced, "--model", result["bundle"])
    assert "failed its training's sanity check" in " ".join(judged.stderr.split())
    from inspekt.api.models import card_summary
    from inspekt.engine.predictor import Predictor

    served = card_summary("m", Predictor.load(result["bundle"]), has_reference=True)  # what GET /v1/models says
    assert served["sanity"] == {"ok": False, "why": card.sanity.why}
    _serve_says_so(result["bundle"])


def _serve_says_so(bundle: str) -> None:
    """``inspekt serve`` warns at start, before its banner, that a served model failed its sanity check."""
    import os
    import sys

    from conftest import free_port

    exe = os.path.join(os.path.dirname(sys.executable), "inspekt")
    proc = subprocess.Popen(
        [exe, "serve", f"m={bundle}", "--port", str(free_port())], stderr=subprocess.PIPE, text=True
    )
    try:
        said = []
        for line in proc.stderr:  # until the banner: the models are loaded by then
            said.append(line)
            if line.startswith("inspekt serve:"):
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    text = " ".join("".join(said).split())
    assert f"warning: {bundle} failed its training's sanity check:" in text, text


def test_imbalanced_data_gets_the_balanced_sampler_and_finds_the_rare_class(imbalanced, tmp_path):
    proc = _train(imbalanced, tmp_path)
    summary = "training 202 images (ok 192, scratch 10), validation 50 (ok 48, scratch 2); imbalance 19.2:1"
    assert summary in proc.stderr and "model: tiny_cnn width=8, input 32x32x3" in proc.stderr
    assert "sampler balanced (classes 19:1 imbalanced" in proc.stderr and "warning" not in proc.stderr
    card = open_bundle(proc.stdout.strip().splitlines()[-1]).card
    assert card.sanity is not None and card.sanity.ok and passed_sanity(card)
    assert card.metrics["val_balanced_accuracy"] > 0.5  # the rare class is predicted at least once


def test_a_detector_that_finds_nothing_warns_and_is_marked_failed(tmp_path):
    from inspekt.data.synth import write_dataset

    data = write_dataset(tmp_path / "d", n=24, size=64, layout="boxes", seed=1).root
    proc = cli("train", "detect", "--data", data, "--out", tmp_path / "runs", "--epochs", "1", "--imgsz", "64",
                    "threads=1", "--json")  # fmt: skip
    why = "it finds none of the validation boxes (mAP@0.5 = 0)"  # one epoch: no box at all
    assert f"warning: training failed its sanity check: {why}." in proc.stderr
    result = json.loads(proc.stdout)
    assert result["sanity"] == {"ok": False, "why": why} and "val_box_f1" in result["metrics"]
    assert not passed_sanity(open_bundle(result["bundle"]).card)


def test_plain_train_classify_uses_classifications_own_defaults(tmp_path):
    import yaml

    from inspekt.data.synth import write_dataset

    data = write_dataset(tmp_path / "d", n=40, size=32, seed=5).root
    out = tmp_path / "runs"
    proc = cli("train", "classify", "--data", data, "--out", out, "--epochs", "1", "--imgsz", "128", "threads=1")
    assert "model: tiny_cnn stem_stride=2 pool=avgmax, input 128x128x3" in proc.stderr
    (written,) = (yaml.safe_load(f.read_text()) for f in out.rglob("config.yaml"))
    assert (written["epochs"], written["lr"], written["augment"], written["patience"]) == (1, 0.001, "light", 20)
    card = open_bundle(proc.stdout.strip().splitlines()[-1]).card
    assert card.params["pool"] == "avgmax" and card.params["stem_stride"] == 2
