"""What a task is: the one object the modes (predict, train, evaluate, export) ask about anything
that differs between classify, segment and anomaly. ``inspekt.tasks`` registers one per name.

A task knows its model's outputs and how they become a ``Prediction``, its card's rules and
thresholds, its training hooks, its evaluation and report plots. The modes above know none of
this: they look the task up by the card's (or the config's) ``task`` and call it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from inspekt.card import ModelCard, PostProcess
from inspekt.errors import ConfigError, DatasetError
from inspekt.io.files import iter_images
from inspekt.results import BatchReport, Prediction

if TYPE_CHECKING:
    from inspekt.config import TrainConfig
    from inspekt.data import Dataset, Sample

# A model as the tasks see it: normalised NCHW float32 batch -> its outputs by name.
RunOutputs = Callable[[np.ndarray], dict[str, np.ndarray]]
Progress = Callable[[int], None] | None


class DrawnPrediction(Prediction):
    """A Prediction that can draw itself: ``plot`` (notebooks) and ``overlay`` (masks and maps)."""

    def plot(self, image: np.ndarray | None = None, *, ax=None):
        """Draw the image with its label and top scores (for notebooks); returns the matplotlib Axes.

        Args:
            image: the decoded image; by default it is read again from ``source``.
            ax: an Axes to draw into (default: a new figure).
        """
        from inspekt.draw import plot_prediction

        return plot_prediction(self, self._image(image), ax=ax)

    def overlay(self, image: np.ndarray | None = None, *, opacity: float = 0.4) -> np.ndarray:
        """The image (RGB, original size) with the predicted mask filled at ``opacity`` and outlined
        (anomaly: the anomaly map as a heat map at ``opacity``, anomalous regions outlined in white).

        Args:
            image: the decoded image; by default it is read again from ``source``.
            opacity: fill opacity in [0, 1].

        Raises:
            ValueError: a prediction without a mask (classification).
        """
        if self.mask is None:
            raise ValueError(f"{self.source}: a {self.task} prediction has no mask to overlay")
        from inspekt.draw import overlay_mask

        return overlay_mask(self._image(image), self.mask, opacity=opacity)

    def _image(self, image: np.ndarray | None) -> np.ndarray:
        if image is not None:
            return image
        from inspekt.io import load_image

        return load_image(self.source, mode="keep")


class Task:
    """One task's behaviour; subclasses live in ``inspekt.tasks.<name>``.

    Attributes:
        name: the card's and the config's ``task``.
        score_axis: the axis of model.onnx's first output that holds one score per class (checked
            against the card's classes when a bundle loads), or None when it has none.
        thresholds: what ``eval --set-threshold`` stores ("" when the task has no such threshold).
        int8_metrics: the evaluation metrics ``export --int8`` compares between the fp32 and INT8 graphs
            (each may drop by at most ``--max-drop``); empty: the task's models are not quantised.
        int8_agreeing: what ``int8_agreement`` counts ("labels", "boxes"), for messages.
        headline: the evaluation metrics a page shows first.
        explainable: whether its models have Grad-CAM explanations (``inspekt explain``).
        default_model: the registered model trained when the config names none.
        model_defaults: config keys each model decides for itself unless given (e.g. epochs).
        train_defaults: config values this task trains with unless given (instead of the config's
            class defaults; written to the run's config.yaml like any value).
        train_summary: what ``inspekt train <task>`` does, in one line.
        train_options: the ``TrainConfig`` keys that ``inspekt train <task>`` offers as --options (the
            rest are ``key=value`` overrides); their help is the config field's description.
        train_params: --options that set a ``model_params`` key, with their help.
        train_help: help that says more for this task than the config field's description.
        train_example: the ``key=value`` overrides shown in ``inspekt train <task> --help``.
        figures: what ``write_plots`` draws, in a few words.
        issues: what ``inspekt data issues`` checks with this task's out-of-sample predictions: "label"
            (per-image class probabilities against the labels), "mask" (predicted against drawn masks)
            or "" (nothing).
    """

    name: ClassVar[str]
    score_axis: ClassVar[int | None] = None
    thresholds: ClassVar[str] = ""
    int8_metrics: ClassVar[tuple[str, ...]] = ()
    int8_agreeing: ClassVar[str] = ""
    headline: ClassVar[tuple[str, ...]] = ()
    explainable: ClassVar[bool] = False
    default_model: ClassVar[str]
    model_defaults: ClassVar[frozenset[str]] = frozenset()
    train_defaults: ClassVar[dict[str, Any]] = {}
    train_summary: ClassVar[str] = ""
    train_options: ClassVar[tuple[str, ...]] = ()
    train_params: ClassVar[dict[str, str]] = {}
    train_help: ClassVar[dict[str, str]] = {}
    train_example: ClassVar[str] = "patience=3"
    figures: ClassVar[str] = ""
    issues: ClassVar[str] = ""

    # --- the card ---------------------------------------------------------------------------

    def check_card(self, card: ModelCard) -> None:
        """Refuse a card this task cannot use (ValueError with the reason)."""

    def fits(self, ds: Dataset) -> bool:
        """Whether this dataset has what training this task needs (labels, masks, a normal class)."""
        return False

    def with_threshold(
        self, card: ModelCard, threshold: float | None, min_area: int | None, pixel_threshold: float | None
    ) -> ModelCard:
        """The card deciding at another threshold / minimum region area (None keeps the card's)."""
        raise NotImplementedError

    def store_threshold(self, card: ModelCard, value: float) -> ModelCard:
        """The card with ``value`` stored as its decision threshold (``eval --set-threshold``)."""
        raise ConfigError(f"a {self.name} model has no decision threshold to store")

    def controls(self, card: ModelCard) -> list[Control]:
        """The thresholds a person may move while looking at predictions (a page's sliders)."""
        return []

    # --- prediction -------------------------------------------------------------------------

    def predict(
        self, card: ModelCard, images: Sequence[np.ndarray], sources: Sequence[str], run: RunOutputs, batch_size: int
    ) -> list[Prediction]:
        """Predictions for decoded images, one model call per ``batch_size`` images (or windows)."""
        raise NotImplementedError

    def cells(self, prediction: Prediction, card: ModelCard, topk: int | None, precise: bool) -> dict[str, str]:
        """One prediction as the columns of ``inspekt predict``'s table (``precise``: of its CSV),
        between the path and the time."""
        raise NotImplementedError

    def confidence(self, reference: Prediction, prediction: Prediction) -> tuple[str, float]:
        """How sure ``prediction`` is of ``reference``'s verdict (what-if sweeps): its name and value."""
        return "score", float(prediction.score)

    # --- INT8 export -------------------------------------------------------------------------

    def int8_truth(self, card: ModelCard, samples: Sequence[Sample]) -> list[Sample]:
        """The samples that can judge an INT8 graph (those ``evaluate`` scores against something).

        Raises:
            DatasetError: their annotations do not fit the model (e.g. labels it does not know).
        """
        raise ConfigError(f"{self.name} models are not quantised to INT8")

    def int8_agreement(self, fp32: Any, int8: Any) -> float:
        """The share of outputs on which two evaluations of the same images (fp32 and INT8 graphs) agree."""
        raise ConfigError(f"{self.name} models are not quantised to INT8")

    def int8_gap(self, card: ModelCard, samples: Sequence[Sample]) -> str | None:
        """What the images judging INT8 leave unmeasured (e.g. ``hold no 'Fray' image: ...``), said once
        as a warning; None when nothing (the default)."""
        return None

    # --- training ---------------------------------------------------------------------------

    def configure(self, cfg: TrainConfig) -> TrainConfig:
        """The config with this task's ``train_defaults`` for the keys not given, its default model when
        none was chosen, and for the default model ``default_params`` under the given model_params."""
        given = cfg.model_fields_set
        update = {key: value for key, value in self.train_defaults.items() if key not in given}
        if "model" not in given:
            update["model"] = self.default_model
        configured = cfg.model_copy(update=update)
        params = self.default_params(configured) if configured.model == self.default_model else {}
        if params:
            update["model_params"] = params | cfg.model_params
        return cfg.model_copy(update=update) if update else cfg

    def default_params(self, cfg: TrainConfig) -> dict[str, Any]:
        """``model_params`` the default model trains with under this config unless given (written to the
        card like any parameter, so changing them never changes how an old bundle loads)."""
        return {}

    def config_defaults(self, cfg: TrainConfig) -> set[str]:
        """Config keys left to the model's own defaults, so not written to the run's config.yaml."""
        return set(self.model_defaults) - cfg.model_fields_set

    def training(self, cfg: TrainConfig, ds: Dataset) -> Any:
        """One run's training: reads the data and builds the network now (bad data or parameters fail
        before any run folder exists); its ``fit(hooks, run_dir)`` runs networks through ``hooks.loop``
        (the one loop, with the run folder's checkpoints), reports other steps to ``hooks.progress``
        and returns a ``Fitted``; its ``ds`` is the dataset (its fingerprint guards ``resume``)."""
        raise ConfigError(f"training {self.name} models is not available in this version")

    # --- evaluation -------------------------------------------------------------------------

    def evaluate(self, predictor: Any, dataset: Dataset, split: str, progress: Progress = None) -> Any:
        """Predict a dataset split with ``predictor`` and score it; a typed result with ``to_dict``
        and ``rows``."""
        raise NotImplementedError

    def check_data(self, ds: Dataset, card: ModelCard, advice: str) -> None:
        """Refuse data this task's model cannot be compared with (``data issues --model``): DatasetError
        naming what is missing, then ``advice``. The default accepts any data."""

    def check_threshold_choice(self, card: ModelCard, choice: str | float) -> str | float:
        """``eval --set-threshold`` before predicting anything: the parsed choice, or ConfigError."""
        raise ConfigError(f"--set-threshold does not apply to {self.name} models")

    def choose_threshold(self, result: Any, choice: str | float) -> float:
        """The threshold ``choice`` names on an evaluation (e.g. "best-f1")."""
        return float(choice)

    def rescore(self, result: Any, threshold: float) -> Any:
        """The evaluation decided again at the threshold ``choose_threshold`` picked on it (tasks whose
        ``check_threshold_choice`` accepts "best-f1"; a number is scored by evaluating at it)."""
        raise NotImplementedError

    def threshold_note(self, result: Any) -> str | None:
        """Advice when the stored decision threshold does much worse on the evaluated images than the
        best-F1 one (``shared.threshold_note``); None where it does not, or the task has no such choice."""
        return None

    def write_plots(
        self, result: Any, predictor: Any, dataset: Dataset, folder: Path, limit: int | None = None
    ) -> list[Path]:
        """The evaluation's figures in ``folder``, most telling first; ``limit`` caps the per-image
        panels (None: the task's default), which are named ``NNN_...png`` by rank and say on the image
        what went wrong. Returns the files written."""
        return []

    def summary(self, result: Any) -> list[Table]:
        """The evaluation as tables for a terminal or a page."""
        return []


@dataclass
class Fitted:
    """What a task's training hands back to the trainer, which writes the bundle and the run folder.

    Attributes:
        network: the fitted torch network (CPU, eval mode).
        card: its card (metrics, thresholds, input spec).
        samples: a few preprocessed inputs the ONNX export is parity-checked on (None: random ones).
        train_files: the images it was fitted to (profiled for the drift reference).
        val_files: held-out images (predicted for the drift reference).
        report: files that could not be read.
        notes: what the user must know about the run.
        calibration_files: other images that shaped the model and are not ``val_files`` (anomaly: the defect
            images that set its threshold), recorded with them as seen.
    """

    network: Any
    card: ModelCard
    samples: np.ndarray | None
    train_files: list[str]
    val_files: list[str]
    report: BatchReport
    notes: list[str]
    calibration_files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Control:
    """A threshold a page shows as a slider in [0, 1]: ``keyword`` is its ``Predictor.with_threshold``
    argument."""

    label: str
    keyword: str
    value: float
    help: str


class Table:
    """A titled table of already formatted cells, for whichever front shows it."""

    def __init__(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], note: str = ""):
        self.title, self.columns, self.rows, self.note = title, list(columns), [list(r) for r in rows], note


def fmt(value: Any, digits: int = 3) -> str:
    """A metric as a table cell: rounded, or "-" when undefined (every front's tables)."""
    return "-" if value is None else f"{value:.{digits}f}"


def region_cells(prediction: Prediction, area: str, score: str, precise: bool) -> dict[str, str]:
    """``Task.cells`` of a task that finds regions (segment, anomaly): verdict, regions and their area."""
    regions = len(prediction.extra["components"])
    if precise:
        return {
            "label": str(prediction.label),
            "score": f"{prediction.score:.6f}",
            "verdict": str(prediction.extra["verdict"]),
            "components": str(regions),
            area: str(prediction.extra[area]),
        }
    return {
        "label": str(prediction.label),
        score: f"{prediction.score:.3f}",
        "regions": str(regions),
        "area %": f"{prediction.extra[area]:.3f}",
    }


def region_post(card: ModelCard, min_area: int | None) -> PostProcess:
    """The card's post-processing with another minimum region area (segment and anomaly)."""
    post = card.postprocess or PostProcess(min_area=0, kernel=3)
    return post if min_area is None else post.model_copy(update={"min_area": min_area})


def min_area_error(min_area: int, task: str) -> ConfigError:
    """The error for a minimum region area that does not apply (a classifier) or is negative."""
    return ConfigError(
        f"--min-area applies to segmentation, detection and anomaly models and must be >= 0 (got "
        f"{min_area} for a {task} model)"
    )


def check_probability(name: str, value: float | None, what: str = "a probability") -> None:
    """A threshold given by the user must be a probability (anomaly models: a normalised score) in [0, 1]."""
    if value is not None and not 0 <= value <= 1:
        raise ConfigError(f"{name} {value} must be {what} in [0, 1]")


def predict_split(
    predictor: Any, dataset: Dataset, report: BatchReport, progress: Progress = None
) -> Iterator[tuple[Sample, Prediction]]:
    """The one evaluation loop: every image of a (selected) split through the predictor, one batch at
    a time, with progress; unreadable files go to ``report``. Yields each sample with its prediction."""
    samples = {str(s.path): s for s in dataset.samples}
    files = list(samples)
    for start in range(0, len(files), predictor.batch_size):
        chunk = files[start : start + predictor.batch_size]
        for prediction in predictor.predict(chunk, report=report):
            yield samples[prediction.source], prediction
        if progress:
            progress(len(chunk))


def nothing_scored(dataset: Dataset, n_files: int, split: str, report: BatchReport) -> DatasetError:
    """The error of an evaluation that could score no image, naming the first skipped file and why."""
    first = report.skipped[0] if report.skipped else None
    detail = f" (first: {first.path}: {first.reason})" if first else ""
    return DatasetError(f"{dataset.root}: none of the {n_files} image(s) of split {split!r} could be scored{detail}")


def nothing_to_train(ds: Dataset, split: str, report: BatchReport, usable: str = "") -> DatasetError:
    """The error of a training split none of whose images could be used: the first one that could not
    and why (the files are the problem), or, for an empty split, to add images.

    Args:
        ds: the split's samples.
        split: its name ("training", "validation").
        report: the skipped files of the run so far (other splits' included).
        usable: what each image also needs ("a usable mask"), for the message.
    """
    needs = f" (each needs {usable})" if usable else ""
    paths = {str(s.path) for s in ds.samples}
    mine = [s for s in report.skipped if s.path in paths]
    if mine:  # it had images, and none could be used
        return DatasetError(
            f"{ds.root}: none of the {len(ds.samples)} images of the {split} split could be used{needs}; e.g. "
            f"{mine[0].path}: {mine[0].reason}. Fix or remove them (inspekt data info lists them)"
        )
    return DatasetError(f"{ds.root}: the {split} split has no images{needs}; add images or lower val=")


def input_channels(ds: Dataset, cfg: TrainConfig) -> int:
    """1 or 3: ``cfg.channels``, or 3 when any of the first 32 images is in colour."""
    if cfg.channels != "auto":
        return int(cfg.channels)
    for _, image in iter_images([s.path for s in ds.samples[:32]], mode="keep", report=BatchReport()):
        if image.ndim == 3:
            return 3
    return 1


def device_for(cfg: TrainConfig):
    """The torch device ``cfg.device`` names (auto: CUDA when available)."""
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but torch sees no CUDA GPU; use device=cpu (or auto)")
    return torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
