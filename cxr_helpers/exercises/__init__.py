"""Checks for the notebooks' "Your turn" exercises: each verifies behaviour, never reads the solutions.

A check takes the student's function (or class), runs it on hand-made cases and, where the notebook
passes them, on the notebook's own data, and compares what it does with the workbook's helpers
or with a library (``metrics.masked_accuracy``, ``TfidfBaseline.top_words``, the fusion head itself,
scikit-learn's rules) or with facts true by construction (no patient in two splits). It prints one
line, "Not done yet" (a stub: returns None or raises NotImplementedError), "Not quite" with a hint,
or "Correct!", and returns True only when the answer is right, so "run all" stays green with the
stubs in place. No check imports ``cxr_helpers.solutions`` and no failed check prints the expected
answer: an instructor can delete ``solutions.py`` from a student copy and every notebook still runs.

One module per notebook: ``data_prep`` (01), ``image_baseline`` (02), ``text_baseline`` (03),
``fusion`` (04), ``interpretation`` (05); ``feedback`` holds what every check says.

How to add an exercise
1. Write the reference solution in ``cxr_helpers/solutions.py``, in its notebook's section.
2. Write ``check_<name>(function, ...)`` in the notebook's module here. Get the student's answer
   with ``feedback.student_answer(name, lambda: function(...))`` (it handles stubs and errors;
   stop when it returns ``NO_ANSWER``); compare with a helper, a library or a hand-made case, never
   with ``solutions``; end with ``feedback.not_quite(problem, hint)`` or ``feedback.correct(message)``.
   A problem describes the student's answer (its shape, its value, the case it fails), never the
   expected value; extra arguments (the notebook's data) are optional, so ``check(function)`` works.
3. Export it below (import and ``__all__``).
4. Add a row to ``EXERCISES`` in ``tests/test_exercises.py``: the check, the solution's name, the
   notebook's stub and two or more plausible wrong answers. The tests then run the check against
   the solution, the stub and the wrong answers, look for the expected answer in the check's
   output, and run everything again in a copy of the package without ``solutions.py``.
5. In the notebook: a stub that returns None (or raises NotImplementedError), then the check.
"""

from cxr_helpers.exercises.data_prep import check_split_by_patient
from cxr_helpers.exercises.fusion import check_concat_head, check_gated_fusion
from cxr_helpers.exercises.image_baseline import check_masked_bce
from cxr_helpers.exercises.interpretation import (
    check_exact_shapley,
    check_gradcam_from_hooks,
    check_pointing_game_with_tolerance,
    check_probability_shift,
)
from cxr_helpers.exercises.text_baseline import check_top_words

__all__ = [
    "check_concat_head",
    "check_exact_shapley",
    "check_gated_fusion",
    "check_gradcam_from_hooks",
    "check_masked_bce",
    "check_pointing_game_with_tolerance",
    "check_probability_shift",
    "check_split_by_patient",
    "check_top_words",
]
