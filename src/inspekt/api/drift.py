"""The drift endpoint's work: uploaded images vs the bundle's reference profile, in the library's engine."""

from __future__ import annotations

from inspekt.api.models import ServedModel
from inspekt.api.options import DRIFT_FIELDS, _check_fields, _number
from inspekt.api.problems import Problem
from inspekt.api.uploads import Upload, within_budget
from inspekt.bundle import model_version
from inspekt.drift.engine import compare_profiles
from inspekt.drift.types import CHECKS, MAX_PERMUTATIONS, MIN_PERMUTATIONS, DriftConfig, DriftResult, parse_checks
from inspekt.engine.reference import model_outputs
from inspekt.errors import ConfigError, ImageLoadError
from inspekt.io import image_size
from inspekt.profiling.profile import profile_chunk, sample_files
from inspekt.results import SkippedFile


def drift_config(fields: dict[str, str], default_checks: tuple[str, ...] = CHECKS) -> DriftConfig:
    """``DriftConfig`` from the form fields (alpha, permutations, checks, min_effect, seed); without
    ``checks``, the server's ``default_checks``.

    Raises:
        Problem: 422 naming the field.
    """
    _check_fields(fields, DRIFT_FIELDS)
    settings = {
        "alpha": _number(fields, "alpha", float, 1e-6, 0.5),
        "permutations": _number(fields, "permutations", int, MIN_PERMUTATIONS, MAX_PERMUTATIONS),
        "min_effect": _number(fields, "min_effect", float, 0, 100),
        "seed": _number(fields, "seed", int, 0, 2**31 - 1),
    }
    chosen = parse_checks(fields.get("checks"))
    settings["checks"] = chosen or default_checks
    try:
        return DriftConfig(**{k: v for k, v in settings.items() if v is not None})
    except ConfigError as exc:
        raise Problem(422, "bad-parameter", str(exc)) from None


def _screen(
    uploads: list[Upload], max_pixels: int | None, budget: int | None
) -> tuple[list[tuple[str, bytes]], list[SkippedFile]]:
    """Refuse images over the pixel limit or past the request's pixel budget from their headers,
    before anything decodes them; repeated upload names get a ``#2``, ``#3`` suffix (the model's
    sample is looked up by name, and clients often send every frame as ``image.jpg``)."""
    renamed, used = [], set()
    for upload in uploads:
        name, copy = upload.name, 1
        while name in used:
            copy += 1
            name = f"{upload.name}#{copy}"
        used.add(name)
        renamed.append(Upload(name, upload.data))
    fitting, over = within_budget(renamed, budget)
    kept, refused = [], [SkippedFile(e["file"], e["detail"]) for e in over]
    for upload in fitting:
        try:
            width, height = image_size(bytes(upload.data))
        except ImageLoadError as exc:
            refused.append(SkippedFile(upload.name, str(exc).split(": ", 1)[-1]))
            continue
        if max_pixels is not None and width * height > max_pixels:
            refused.append(
                SkippedFile(
                    upload.name, f"image is {width} x {height} pixels, more than the server's limit of {max_pixels:,}"
                )
            )
            continue
        kept.append((upload.name, bytes(upload.data)))
    return kept, refused


def run_drift(
    model: ServedModel, uploads: list[Upload], config: DriftConfig, max_pixels: int | None, budget: int | None = None
) -> DriftResult:
    """Profile the uploads, predict a sample with the model, and compare with the reference
    (as ``inspekt drift BUNDLE FOLDER`` does, on images held in memory).

    Raises:
        InspektError: fewer than 2 readable images.
    """
    reference = model.reference
    kept, refused = _screen(uploads, max_pixels, budget)
    current = profile_chunk(kept, reference.min_side)
    current.skipped = refused + current.skipped
    notes = []
    if reference.model and {"predictions", "embeddings"} & set(config.checks) and len(current) >= 2:
        data = dict(kept)
        chosen = sample_files(current.files, len(reference.model["files"]), config.seed)
        outputs = model_outputs(model.predictor, [data[name] for name in chosen])
        if outputs is not None and len(outputs["labels"]) == len(chosen):
            outputs["files"] = chosen  # model_outputs names in-memory images by size; the upload names say more
            current.model = outputs
        else:
            notes.append(
                "the model could not read every profiled image, so prediction and embedding checks were skipped"
            )
    result = compare_profiles(reference, current, config)
    result.notes += notes
    result.reference_profile, result.current_profile = reference, current
    result.sources = {
        "reference": f"the training profile of model {model_version(model.predictor.bundle)}",
        "current": f"{len(uploads)} uploaded file(s)",
    }
    return result
