"""Programmatic judges shipped with PrefLab (PREFLAB_JUDGE_CALLABLE_MODULES allows this module
by default). See judging/kinds/programmatic.py for the signature."""

from __future__ import annotations

import re
from typing import Any

_SPACE = re.compile(r"\s+")


def _normal(text: str) -> str:
    return _SPACE.sub(" ", text).strip().casefold()


def exact_answer(
    prompt: str, response_a: str, response_b: str, metadata: dict[str, Any]
) -> str | None:
    """For verifiable tasks whose prompt metadata holds the reference under "answer": the
    response that ends with the answer (whitespace and case aside) wins; both or neither: a
    tie. No reference: None (the check cannot decide; recorded as unparseable)."""
    reference = metadata.get("answer")
    if not isinstance(reference, str) or not reference.strip():
        return None
    answer = _normal(reference)
    a_right = _normal(response_a).endswith(answer)
    b_right = _normal(response_b).endswith(answer)
    if a_right == b_right:
        return "tie"
    return "A" if a_right else "B"
