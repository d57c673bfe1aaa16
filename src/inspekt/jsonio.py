"""Reading JSON from untrusted hands (a card.json, an enhancement pipeline sent to the API).

``json.loads`` recurses once per nesting level: ``[[[[...]]]]`` 100,000 deep raises RecursionError,
and a parsed value nested a few hundred deep breaks the code that walks it later (validation, the
JSON writer). ``loads`` turns both into the ``json.JSONDecodeError`` its callers already report.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32  # inspekt's own files nest 4 deep


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads``, refusing documents nested deeper than ``max_depth``.

    Raises:
        json.JSONDecodeError: invalid JSON, or nested too deeply (the message says which).
        UnicodeDecodeError: bytes that are not UTF-8.
    """
    document = text.decode("utf-8") if isinstance(text, bytes) else text
    try:
        value = json.loads(document)
    except RecursionError:
        raise _too_deep(document, max_depth) from None
    if _depth(value) > max_depth:
        raise _too_deep(document, max_depth)
    return value


def _too_deep(document: str, max_depth: int) -> json.JSONDecodeError:
    return json.JSONDecodeError(f"nested more than {max_depth} levels deep", document, 0)


def _depth(value: Any) -> int:
    """The nesting depth of lists and dicts (iterative: a deep value must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest
