"""What every exercise check says: not done yet, not quite (with a hint), or correct; never the answer.

A check calls the student's code through ``student_answer``: a stub (returns None or raises
NotImplementedError) and an error in the student's code both end in one printed line and
``NO_ANSWER``, so a notebook with its stubs still runs top to bottom. ``not_quite`` and
``correct`` print the verdict and return the bool the check returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

NO_ANSWER = object()  # what ``student_answer`` returns when there is nothing to check


def student_answer(name: str, call: Callable[[], Any]) -> Any:
    """``call()``'s result, or NO_ANSWER after saying why there is none (stub still in place, or an error)."""
    try:
        answer = call()
    except NotImplementedError:
        answer = None
    except Exception as error:  # the student's bug: say so in one line and keep "run all" going
        print(f"Not quite: {name} raised {type(error).__name__}: {error}. Call it on its own to see the traceback.")
        return NO_ANSWER
    if answer is None:
        print(f"Not done yet: {name} returns None (or raises NotImplementedError). "
              "Fill in the TODO and run the cell again.")
        return NO_ANSWER
    return answer


def not_quite(problem: str, hint: str | None = None) -> bool:
    """Say what is wrong (about the student's answer, never the expected one), with a hint; returns False."""
    print(f"Not quite: {problem}")
    if hint:
        print(f"Hint: {hint}")
    return False


def correct(message: str) -> bool:
    """Say the answer is right, and what it shows; returns True."""
    print(f"Correct! {message}")
    return True
