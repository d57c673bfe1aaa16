"""The issues CSV: the contract between ``inspekt data issues`` and the workbench's Review page."""

from __future__ import annotations

import pytest

from inspekt.curate.issues import CSV_COLUMNS, DataIssue, read_issues_csv, write_issues_csv
from inspekt.errors import DatasetError


def _issues() -> list[DataIssue]:
    return [
        DataIssue(1, 'train/crack/a, "odd".png', "train", "label", 0.97, "crack", "free", "p(free)=0.97"),
        DataIssue(2, "b.png", None, "duplicate", 0.5, None, None, "same as c.png\n(second line)"),
        DataIssue(3, "c.png", "test", "split", 1.0, "blowhole", None, ""),
    ]


def test_round_trip_keeps_every_field(tmp_path):
    path = write_issues_csv(_issues(), tmp_path / "issues.csv")
    assert read_issues_csv(path) == _issues()
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(CSV_COLUMNS)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind 'typo'"):
        DataIssue(1, "a.png", None, "typo", 0.1, None, None, "")


@pytest.mark.parametrize(
    ("cell", "column", "value", "message"),
    [
        (0, "rank", "first", "row 3, column rank: 'first' is not a whole number"),
        (4, "score", "high", "row 3, column score: 'high' is not a number"),
        (4, "score", "nan", "column score: 'nan' is not a finite number"),
        (3, "kind", "typo", "row 3, column kind: 'typo' is not one of"),
        (1, "path", "", "row 3, column path: '' is empty"),
    ],
)
def test_bad_cell_names_file_row_and_column(tmp_path, cell, column, value, message):
    path = write_issues_csv(_issues(), tmp_path / "issues.csv")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[2].startswith("2,b.png")
    cells = lines[2].split(",")
    cells[cell] = value
    lines[2] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=message) as info:
        read_issues_csv(path)
    assert str(path) in str(info.value)


def test_missing_column_and_missing_file(tmp_path):
    path = tmp_path / "issues.csv"
    path.write_text("rank,path,kind\n1,a.png,label\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="lacks column\\(s\\) split, score, label, suggested, detail"):
        read_issues_csv(path)
    with pytest.raises(DatasetError, match="nope.csv: cannot read"):
        read_issues_csv(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match="lacks column"):
        read_issues_csv(tmp_path / "empty.csv")
