"""One data issue (a suspect label, mask, duplicate, outlier or split gap) and its CSV form.

``inspekt data issues`` writes the ranked list with :func:`write_issues_csv`; the workbench's Review
page reads it back with :func:`read_issues_csv`. The columns are fixed: ``CSV_COLUMNS``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from inspekt.errors import DatasetError
from inspekt.io import write_file

KINDS = ("label", "mask", "duplicate", "outlier", "split")
CSV_COLUMNS = ("rank", "path", "split", "kind", "score", "label", "suggested", "detail")


@dataclass(frozen=True)
class DataIssue:
    """One suspect sample (or one split gap), ranked among all issues found in a dataset.

    Attributes:
        rank: 1 for the issue most worth a person's look, then 2, 3, ...
        path: the image the issue is about (for a "split" gap: an example image of it).
        split: the sample's split ("train", "val", "test") or None when the dataset has none.
        kind: one of ``KINDS``.
        score: how sure the finder is that this is a real problem, 0..1 (higher: more suspect).
        label: the sample's current label (class name; for masks "defect"/"empty"), or None.
        suggested: what the finder would change it to (a class name), or None.
        detail: one line for a person: why it was flagged, with the numbers.
    """

    rank: int
    path: str
    split: str | None
    kind: str
    score: float
    label: str | None
    suggested: str | None
    detail: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"DataIssue kind {self.kind!r} is not one of {', '.join(KINDS)}")


def write_issues_csv(issues: Iterable[DataIssue], path: str | Path) -> Path:
    """Write issues as CSV with the columns ``CSV_COLUMNS`` (empty cell for None), atomically.

    Args:
        issues: the ranked issues.
        path: the CSV file to write.

    Returns:
        The path written.
    """
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(CSV_COLUMNS)
    for issue in issues:
        writer.writerow(
            [issue.rank, issue.path, issue.split or "", issue.kind, f"{issue.score:.6g}"]
            + [issue.label or "", issue.suggested or "", issue.detail]
        )
    return write_file(path, text.getvalue().encode("utf-8"))


def read_issues_csv(path: str | Path) -> list[DataIssue]:
    """Read a CSV written by :func:`write_issues_csv` (or by hand with the same columns).

    Args:
        path: the issues CSV.

    Returns:
        The issues in file order.

    Raises:
        DatasetError: the file is missing, lacks a column, or a cell is invalid (names file, row, column).
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
            header = rows[0].keys() if rows else _header(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(
            f"{path}: cannot read the issues CSV ({exc}); write it with inspekt data issues --csv"
        ) from exc
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise DatasetError(
            f"{path}: the issues CSV lacks column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}"
        )
    return [_issue(path, n, {k: v or "" for k, v in row.items()}) for n, row in enumerate(rows, start=2)]


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), [])


def _issue(path: Path, line: int, row: dict[str, str]) -> DataIssue:
    def bad(column: str, why: str) -> DatasetError:
        return DatasetError(f"{path}: row {line}, column {column}: {row[column]!r} {why}")

    try:
        rank = int(row["rank"])
    except (TypeError, ValueError):
        raise bad("rank", "is not a whole number") from None
    try:
        score = float(row["score"])
    except (TypeError, ValueError):
        raise bad("score", "is not a number") from None
    if not math.isfinite(score):
        raise bad("score", "is not a finite number")
    if row["kind"] not in KINDS:
        raise bad("kind", f"is not one of {', '.join(KINDS)}")
    if not row["path"]:
        raise bad("path", "is empty; every issue names an image")
    return DataIssue(
        rank=rank,
        path=row["path"],
        split=row["split"] or None,
        kind=row["kind"],
        score=score,
        label=row["label"] or None,
        suggested=row["suggested"] or None,
        detail=row["detail"] or "",
    )
