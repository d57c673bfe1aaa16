"""The finders of ``data issues`` without training: ranking, label issues from given probabilities,
mask verdicts, duplicates and split gaps found by ``data info``, and the HTML report."""

from __future__ import annotations

import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from inspekt.curate.find import IssueReport, agreement, rank_issues
from inspekt.curate.gaps import duplicate_issues, split_issues
from inspekt.curate.issues import DataIssue
from inspekt.curate.labels import label_issues, rank_labels
from inspekt.curate.masks import mask_checker, mask_issues
from inspekt.curate.report import render_html
from inspekt.data import open_dataset
from inspekt.data.info import describe
from inspekt.results import Prediction, SkippedFile


def _noise(seed: int, size: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def _save(path, array) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return str(path)


def test_ranking_sorts_by_score_then_kind_then_path():
    issues = [
        DataIssue(0, "b.png", None, "outlier", 0.5, None, None, ""),
        DataIssue(0, "a.png", None, "split", 0.5, None, None, ""),
        DataIssue(0, "c.png", None, "label", 0.5, "x", "y", ""),
        DataIssue(0, "z.png", None, "duplicate", 0.9, None, None, ""),
    ]
    ranked = rank_issues(issues)
    assert [(i.rank, i.path) for i in ranked] == [(1, "z.png"), (2, "c.png"), (3, "b.png"), (4, "a.png")]


def test_planted_labels_are_flagged_from_noisy_probabilities(tmp_path):
    """A model that puts 75-95 % of its probability on the true class: cleanlab flags the images whose
    given label was changed (16 of 240; at least 14 found, nothing else), the right class suggested."""
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    true = [i % 3 for i in range(240)]
    planted = {int(i) for i in rng.choice(240, 16, replace=False)}
    given = [(t + 1 + int(rng.integers(2))) % 3 if i in planted else t for i, t in enumerate(true)]
    for i, label in enumerate(given):
        _save(tmp_path / classes[label] / f"{i:03d}.png", _noise(i, 8))
    ds = open_dataset(tmp_path)
    predictions = {}
    for s in ds.samples:
        i = int(s.path.stem)
        p = rng.uniform(0.0, 0.1, 3)
        p[true[i]] += rng.uniform(0.8, 0.95)
        predictions[str(s.path)] = Prediction(str(s.path), "classify", scores=dict(zip(classes, p / p.sum())))
    ranking = rank_labels(ds, predictions)
    issues = label_issues(ranking, {})
    found = {int(issue.path[-7:-4]) for issue in issues}
    assert found <= planted and len(found) >= 14
    assert all(issue.suggested == classes[true[int(issue.path[-7:-4])]] for issue in issues)
    assert [i.score for i in issues] == sorted((i.score for i in issues), reverse=True)
    assert agreement(ranking)["accuracy"] == pytest.approx(224 / 240, abs=1e-4)


def test_balanced_models_probabilities_return_to_the_label_mix():
    """A model trained on balanced batches says 50/50 where it cannot tell; under labels that are
    90 % "ok" that is 90/10 (Bayes: the posterior scales with the prior)."""
    from inspekt.curate.labels import to_label_prior

    labels = np.array([0] * 9 + [1])
    moved = to_label_prior(np.array([[0.5, 0.5], [0.1, 0.9]]), labels)
    assert moved[0] == pytest.approx([0.9, 0.1]) and moved[1] == pytest.approx([0.5, 0.5])


def test_mask_verdicts(tmp_path):
    """An empty mask where the model is sure of a defect, a drawn defect the model does not see, a
    misplaced one, and two agreeing images (flagged: the first three only)."""
    drawn = np.zeros((20, 20), np.uint8)
    drawn[2:8, 2:8] = 255
    empty = np.zeros((20, 20), np.uint8)
    files = {}
    for name, mask in (("sure", empty), ("missed", drawn), ("off", drawn), ("agree", drawn), ("clean", empty)):
        image = _save(tmp_path / "images" / f"{name}.png", _noise(1, 20))
        _save(tmp_path / "masks" / f"{name}.png", mask)
        files[name] = image
    ds = open_dataset(tmp_path)
    card = SimpleNamespace(masks=None, classes=("background", "defect"))
    check = mask_checker(ds)(card)
    at = {"sure": (12, 18), "missed": None, "off": (12, 18), "agree": (2, 8), "clean": None}
    checks = {}
    for name, span in at.items():
        found, heat = np.zeros((20, 20), np.uint8), np.full((20, 20), 0.02, np.float32)
        if span:
            found[span[0] : span[1], span[0] : span[1]], heat[span[0] : span[1], span[0] : span[1]] = 1, 0.97
        checks[files[name]] = check(files[name], Prediction(files[name], "segment", mask=found, heatmap=heat))
    issues = {i.path: i for i in mask_issues(checks, {})}
    assert set(issues) == {files["sure"], files["missed"], files["off"]}
    assert issues[files["sure"]].suggested == "defect" and issues[files["sure"]].score == pytest.approx(0.97)
    assert issues[files["missed"]].suggested == "empty" and issues[files["missed"]].score == pytest.approx(0.98)
    assert issues[files["off"]].score == 1.0 and "IoU 0.00" in issues[files["off"]].detail


def test_duplicates_and_split_gaps_from_data_info(tmp_path):
    """A test image byte-identical to a training image (leakage), a class on train only, and test
    images far larger than any training image."""
    for i in range(3):
        _save(tmp_path / "train" / "ok" / f"{i}.png", _noise(i))
        _save(tmp_path / "train" / "rare" / f"{i}.png", _noise(10 + i))
        _save(tmp_path / "test" / "ok" / f"big{i}.png", _noise(20 + i, 96))
    (tmp_path / "test" / "ok" / "copy.png").write_bytes((tmp_path / "train" / "ok" / "0.png").read_bytes())
    ds = open_dataset(tmp_path)
    dupes = duplicate_issues(ds, describe(ds, workers=1))
    assert [(d.path.endswith("test/ok/copy.png"), d.score, d.split) for d in dupes] == [(True, 1.0, "test")]
    gaps = split_issues(ds)
    missing = [g for g in gaps if "class rare" in g.detail]
    assert len(missing) == 1 and missing[0].score == 0.7 and "test" in missing[0].detail
    sized = [g for g in gaps if "sized outside" in g.detail]
    assert len(sized) == 1 and sized[0].split == "test" and sized[0].detail.startswith("3 test image(s)")


def test_a_file_listed_twice_is_one_issue_not_a_copy_of_itself(tmp_path):
    """A CSV row repeated under the test split: the same file trained on and tested (it was reported as
    byte-identical to itself, 0.6, with no split named)."""
    for i in range(3):
        _save(tmp_path / "ok" / f"{i}.png", _noise(i))
        _save(tmp_path / "bad" / f"{i}.png", _noise(10 + i))
    rows = [f"{c}/{i}.png,{c},train" for c in ("ok", "bad") for i in range(3)]
    table = tmp_path / "split.csv"
    table.write_text("path,label,split\n" + "\n".join(rows + ["ok/0.png,ok,test", "bad/1.png,ok,train"]) + "\n")
    ds = open_dataset(table)
    dupes = sorted(duplicate_issues(ds, describe(ds, workers=1)), key=lambda d: d.path)
    assert [(d.path.endswith(name), d.score) for d, name in zip(dupes, ("bad/1.png", "ok/0.png"))] == [
        (True, 0.95),
        (True, 1.0),
    ]
    assert dupes[0].detail == "listed 2 times in the dataset, labelled bad and ok"
    assert dupes[1].detail == "listed 2 times in the dataset, on the train and test splits"
    assert not any("byte-identical" in d.detail for d in dupes)


def test_near_duplicate_pairs_are_issues_but_large_families_are_not(tmp_path):
    """A picture saved twice (a little brighter) is a near-duplicate; six re-exposures of another
    picture are one family of similar pictures, left out (``NEAR_GROUP_MAX``)."""
    base, other = _noise(1, 32).astype(int), _noise(2, 32).astype(int)
    _save(tmp_path / "ok" / "pair_a.png", base.clip(0, 250).astype(np.uint8))
    _save(tmp_path / "ok" / "pair_b.png", (base.clip(0, 250) + 3).astype(np.uint8))
    for i in range(6):
        _save(tmp_path / "bad" / f"family_{i}.png", (other.clip(0, 240) + 2 * i).astype(np.uint8))
    ds = open_dataset(tmp_path)
    info = describe(ds, workers=1)
    assert sorted(len(g) for g in info.near_duplicates) == [2, 6]
    issues = duplicate_issues(ds, info)
    assert [(i.path.endswith("pair_b.png"), i.score) for i in issues] == [(True, 0.4)]


def test_a_bundle_judges_only_images_it_did_not_train_on(tmp_path):
    """Trained on this dataset (same fingerprint): only its test split is judged; without a test split,
    everything, with a warning; trained elsewhere: everything, quietly."""
    from inspekt.curate.predictions import _held_out

    for split in ("train", "test"):
        for i in range(2):
            _save(tmp_path / split / "ok" / f"{i}.png", _noise(i if split == "train" else 9 + i))
    ds = open_dataset(tmp_path)

    def judge(dataset, fingerprint, source=""):  # a bundle written before bundles kept their images (seen None)
        data = SimpleNamespace(fingerprint=fingerprint, source=source)
        return _held_out(dataset, SimpleNamespace(card=SimpleNamespace(data=data), seen=None), "m")

    judged, notes = judge(ds, ds.fingerprint())
    assert {s.split for s in judged.samples} == {"test"} and "only its 2 test images" in notes[0]
    train_only = ds.subset("train")
    judged, notes = judge(train_only, train_only.fingerprint())
    assert len(judged) == 2 and "trained on these very images" in notes[0]
    judged, notes = judge(ds, "0123456789abcdef")
    assert len(judged) == 4 and notes == []
    # trained on this folder (the card's source, compared by storage.same_source), which has changed since: said
    # so; a card naming a URL was trained on other data
    judged, notes = judge(ds, "0123456789abcdef", source=str(tmp_path))
    assert len(judged) == 4 and "which has changed since" in notes[0]
    judged, notes = judge(ds, "0123456789abcdef", source="s3://bucket/data")
    assert len(judged) == 4 and notes == []


def test_a_bundle_that_records_its_images_judges_the_others_however_they_are_listed(tmp_path):
    """The bundle's own record (reference.json "seen"), not the listing: a copy or a CSV of the training
    images is still known; images it never saw are all judged."""
    from inspekt.curate.predictions import _held_out
    from inspekt.data.dataset import image_keys

    for i in range(4):
        _save(tmp_path / "data" / "ok" / f"{i}.png", _noise(i))
    shutil.copytree(tmp_path / "data", tmp_path / "copy")
    trained = [tmp_path / "data" / "ok" / f"{i}.png" for i in range(3)]
    card = SimpleNamespace(data=SimpleNamespace(fingerprint="0123456789abcdef", source=""))
    model = SimpleNamespace(card=card, seen={"train": frozenset(image_keys(trained)), "val": frozenset()})
    judged, notes = _held_out(open_dataset(tmp_path / "copy"), model, "m")
    assert [s.path.name for s in judged.samples] == ["3.png"]
    assert notes == ["m trained on 3 of these images: only the other 1 are judged"]
    for i in range(4, 6):
        _save(tmp_path / "new" / "ok" / f"{i}.png", _noise(i))
    judged, notes = _held_out(open_dataset(tmp_path / "new"), model, "m")
    assert len(judged) == 2 and notes == []


def test_fold_recipe_trains_each_task_default_model_unless_told(tmp_path):
    from inspekt.curate.predictions import recipe_config

    assert recipe_config("segment", tmp_path, tmp_path).model == "tiny_unet"
    assert recipe_config("classify", tmp_path, tmp_path).model == "tiny_cnn"
    assert recipe_config("classify", tmp_path, tmp_path, ["model=resnet18", "epochs=3"]).epochs == 3


def test_html_is_self_contained_and_escapes_names(tmp_path):
    image = _save(tmp_path / "<script>alert(1)</script>.png", _noise(0))
    issue = DataIssue(1, image, "train", "label", 0.9, "<b>ok</b>", "pore&co", 'why "<i>"')
    report = IssueReport(
        root=str(tmp_path), layout="classes", n_images=1, task="classify", model="<model>",
        issues=[issue], skipped=[SkippedFile("<bad>.png", "not an image <x>")], notes=["<note>"],
    )  # fmt: skip
    page = render_html(report)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>ok" not in page and "pore&amp;co" in page and "&lt;bad&gt;.png" in page and "&lt;note&gt;" in page
    assert page.count("data:image/jpeg;base64,") == 1
    assert not re.search(r"(src|href)=[\"']?(https?:|//|/|file:)", page), "an external reference"
    assert not re.search(r"url\(|@import|<link|<script", page)


def test_a_weak_judge_is_told_apart_from_weak_folds():
    """The advice fits what judged: folds can train longer; a given --model can only be replaced."""
    from inspekt.curate.find import _weak_model

    weak = {"balanced_accuracy": 0.3, "chance": 0.25}
    folds = "train the folds longer or larger (e.g. epochs=20 imgsz=128) or give --model"
    assert _weak_model(weak, given=False)[0].endswith(folds)
    assert _weak_model(weak, given=True)[0].endswith("give a better --model, or leave it out to cross-validate")
    assert _weak_model({"median_iou": 0.1}, given=True)[0].endswith("give a better --model")
    assert _weak_model({"balanced_accuracy": 0.9, "chance": 0.25}, given=True) == []
    # two classes: a judge at chance (0.5) is weak too; it was not warned about (4 images, an untrained model)
    assert _weak_model({"balanced_accuracy": 0.5, "chance": 0.5}, given=True)
    assert _weak_model({"balanced_accuracy": 0.58, "chance": 0.5}, given=True)
    assert _weak_model({"balanced_accuracy": 0.62, "chance": 0.5}, given=True) == []
