"""Write the legacy bundle fixtures in this folder (documentation of how they were made).

The fixtures were written by commit 5736bbe (main before the package-layout refactor), so that
``tests/test_legacy_bundles.py`` can prove that bundles written by that version keep loading and
predicting the same with the current code. Re-running this with a newer inspekt would defeat that
purpose; to regenerate, check the old commit out and run it there, e.g.::

    git worktree add /tmp/oldmain 5736bbe
    cd /tmp && PYTHONPATH=/tmp/oldmain/src HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 \\
        /work/main/.venv/bin/python /work/main/tests/data/legacy/make_legacy.py
    git -C /work/main worktree remove --force /tmp/oldmain

It uses the public API only (``inspekt.train``, ``inspekt.load_model``, ``inspekt.data.synth.write_dataset``):

1. writes three tiny synthetic datasets (class folders, image/mask folders, MVTec AD) in a temporary folder;
2. trains a classifier (tiny_cnn), a segmenter (tiny_unet) and an anomaly model (ae_ssim), 32 px, 2 epochs, on CPU;
3. copies each run's ``bundle/`` into ``<task>/`` here (``reference.json``, the drift profile, would be left out
   if it were over 200 KB, after checking the bundle opens without it; at these sizes it is kept);
4. writes four probe images per task (``write_dataset`` with n=4: one ok, pore, lop and scratch image) into
   ``probes/<task>/`` and the ONNX predictions of the old code on them into ``expected.json``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

import inspekt
from inspekt.data.synth import write_dataset

HERE = Path(__file__).resolve().parent
SIZE = 48  # image side of the datasets and probes
REFERENCE_LIMIT = 200_000  # bytes; a larger reference.json is dropped (it is optional)
COMMON = {
    "imgsz": 32,
    "epochs": 2,
    "lr": 0.01,
    "warmup_epochs": 0,
    "device": "cpu",
    "threads": 2,
    "seed": 0,
    "deterministic": True,
    "exist_ok": True,
}

DATASETS = {  # task: (layout, images, seed)
    "classify": ("classes", 60, 11),
    "segment": ("segmentation", 60, 12),
    "anomaly": ("mvtec", 60, 13),
}
TRAIN = {  # task: train() options; small widths keep the bundles small, small batches make 2 epochs count
    "classify": {"model": "tiny_cnn", "model_params": {"width": 4}, "batch": 2},
    # balanced sampler: defect images half the time, so the masks are neither empty nor everywhere after 2 epochs
    "segment": {"model": "tiny_unet", "model_params": {"width": 4, "depth": 3}, "batch": 2, "sampler": "balanced"},
    "anomaly": {"model": "ae_ssim", "model_params": {"width": 4, "latent": 16}, "batch": 4},
}
# Probe images: a 4-image class-folder dataset (one ok, pore, lop and scratch image) per task, with a seed and
# colour mode of its own, so the probes are neither training images nor each other's.
PROBES = {"classify": (101, "mixed"), "segment": (202, "grey"), "anomaly": (303, "color")}


def _as_float(value: object) -> float:
    return float(value)  # numpy scalars to plain floats for JSON


def _expected(prediction: inspekt.Prediction, task: str) -> dict:
    row = {"label": prediction.label, "score": _as_float(prediction.score)}
    if task == "classify":
        row["scores"] = {name: _as_float(p) for name, p in (prediction.scores or {}).items()}
    else:
        row["mask_nonzero"] = int(np.count_nonzero(prediction.mask))
        row["heatmap_mean"] = round(_as_float(np.asarray(prediction.heatmap, np.float64).mean()), 8)
        row["mask_shape"] = list(prediction.mask.shape)
    if task == "anomaly":
        row["raw_score"] = _as_float(prediction.extra["raw_score"])
    return row


def _copy_bundle(run_bundle: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(run_bundle, target)
    reference = target / "reference.json"
    if reference.is_file() and reference.stat().st_size > REFERENCE_LIMIT:
        reference.unlink()
        inspekt.load_model(target, backend="onnx")  # must still open without it


def main() -> int:
    print(f"inspekt {inspekt.__version__} from {inspekt.__file__}", flush=True)
    expected: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="inspekt-legacy-") as tmp:
        tmp_path = Path(tmp)
        for task, (layout, n, seed) in DATASETS.items():
            data = tmp_path / "data" / task
            write_dataset(data, n=n, size=SIZE, seed=seed, layout=layout)
            options = {**COMMON, **TRAIN[task]}
            result = inspekt.train(task=task, data=str(data), out=str(tmp_path / "runs"), name=task, **options)
            print(f"{task}: trained, metrics {result.metrics}", flush=True)
            _copy_bundle(Path(result.bundle), HERE / task)

            probe_dir = HERE / "probes" / task
            if probe_dir.exists():
                shutil.rmtree(probe_dir)
            probe_seed, color = PROBES[task]
            probe_data = write_dataset(tmp_path / "probes" / task, n=4, size=SIZE, seed=probe_seed, color=color)
            probe_dir.mkdir(parents=True)
            paths = []
            for source in sorted(probe_data.root.glob("*/*.png")):
                path = probe_dir / f"{source.parent.name}.png"  # ok.png, pore.png, lop.png, scratch.png
                shutil.copyfile(source, path)
                paths.append(path)
            assert len(paths) == 4, paths

            predictor = inspekt.load_model(HERE / task, backend="onnx")
            predictions = predictor.predict([str(p) for p in paths])
            assert len(predictions) == len(paths)
            expected[task] = {p.name: _expected(pred, task) for p, pred in zip(paths, predictions)}

    expected["_written_by"] = {"commit": "5736bbe", "inspekt": inspekt.__version__, "backend": "onnx"}
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps(expected, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
