"""The data loop above the modes: label issues, near-duplicates and outliers found with inspekt's own
trainer and models (``inspekt data issues``), and what the workbench's Review page needs.

Imported lazily: ``inspekt.curate.issues`` (the issues CSV) needs no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "find_issues": "inspekt.curate.find",
    "IssueReport": "inspekt.curate.find",
    "DataIssue": "inspekt.curate.issues",
    "read_issues_csv": "inspekt.curate.issues",
    "write_issues_csv": "inspekt.curate.issues",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'inspekt.curate' has no attribute {name!r}")
