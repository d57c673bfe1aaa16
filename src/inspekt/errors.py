"""Errors a user can cause and fix.

Every class here is an ``InspektError``: the CLI prints its message on one line and exits
with its ``exit_status``, 2 (130 for an interruption; no traceback unless ``--debug``). A
message names the file / key / value at fault and says how to fix it.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable


class InspektError(Exception):
    """Base class of every error a user can cause (bad file, bad option, bad config)."""

    exit_status = 2  # the CLI's


class ImageLoadError(InspektError, ValueError):
    """An image could not be decoded; the message names the source and the reason."""


class ImageTooLargeError(ImageLoadError):
    """An image has more pixels than allowed; it was refused from its header, before decoding."""


class DatasetError(InspektError):
    """A dataset layout could not be read or is ambiguous."""


class BundleError(InspektError):
    """A model bundle is missing, malformed, or was refused (e.g. a pickle)."""


class NothingTrained(InspektError):
    """Training was interrupted (Ctrl-C) before its first epoch finished: there is nothing to keep."""

    exit_status = 130


class RunUnfinished(InspektError):
    """Training was interrupted (Ctrl-C) after its epochs, while its bundle was being written: the
    weights are kept in the run folder, and ``--resume`` finishes it."""

    exit_status = 130


class TrainingDiverged(InspektError):
    """The loss or the weights became NaN or infinite in epoch ``epoch`` (``what`` says which): the
    learning rate is too high for the data, or the inputs hold NaN."""

    def __init__(self, message: str, *, epoch: int, what: str):
        super().__init__(message)
        self.epoch, self.what = epoch, what


class ConfigError(InspektError):
    """A configuration key or value is invalid."""


class InspektWarning(UserWarning):
    """Something was handled, but the user should know (e.g. a multi-page TIFF)."""


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """Return ' Did you mean "x"?' for the closest choice, or '' when none is close.

    Args:
        word: what the user typed.
        choices: the valid spellings.
        cutoff: how close (difflib's ratio) a choice must be; higher where a miss costs more than a silence.

    Returns:
        A sentence fragment starting with a space, ready to append to a message.
    """
    choices = list(choices)
    same = next((c for c in choices if c.lower() == word.lower()), None)  # only the case differs: "LOP", lop
    close = [same] if same is not None else difflib.get_close_matches(word, choices, n=1, cutoff=cutoff)
    return f' Did you mean "{close[0]}"?' if close else ""


def one_line(value: object) -> str:
    """An exception or value as one line of at most 200 characters, for messages."""
    text = " ".join(str(value).split())
    return text if len(text) <= 200 else text[:197] + "..."


def require_number(key: str, value: object, allowed: str, *, whole: bool = False) -> None:
    """Refuse a Python keyword's value that is not a real number (a string, a bool, None, NaN; with
    ``whole``, a fraction) with a ConfigError naming the key, before it is compared with anything."""
    kind = numbers.Integral if whole else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(float(value)):
        shown = f"{type(value).__name__} {value!r}" if isinstance(value, str) else repr(value)
        raise ConfigError(f"{key}={shown} must be {allowed}")
