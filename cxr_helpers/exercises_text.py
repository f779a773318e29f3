"""Check for notebook 03's "Your turn" exercise: it prints feedback and never stops a run-all."""

from __future__ import annotations

from collections.abc import Callable

from cxr_helpers import solutions_text
from cxr_helpers.labels import label_index

CHECKED_LABELS = ("Pleural Effusion", "Cardiomegaly", "Support Devices", "Pneumothorax")


def check_top_words(function: Callable[..., list[str] | None], tfidf_model, k: int = 10) -> bool:
    """Compare the student's ``top_words(tfidf_model, label, k)`` with the solution on a few labels."""
    # labels with a fitted regression (a tiny training split can hold one class only for some labels)
    labels = [label for label in CHECKED_LABELS if tfidf_model.classifiers[label_index(label)] is not None]
    if not labels:
        print("No label of the check has both classes in this training split; try a larger cohort.")
        return False
    for label in labels:
        answer = function(tfidf_model, label, k)
        if answer is None:
            print("Not done yet: top_words returns None. Fill in the function and run the cell again.")
            return False
        expected = solutions_text.top_words(tfidf_model, label, k)
        answer = [str(word) for word in answer]
        if answer == expected:
            continue
        if sorted(answer) == sorted(expected):
            print(f"Almost: for {label!r} you have the right words in the wrong order. Largest coefficient first.")
        elif len(answer) != len(expected):
            print(f"Not quite: for {label!r} you returned {len(answer)} words, expected {len(expected)}.")
        else:
            print(f"Not quite: for {label!r} you returned {answer[:3]}... Hint: column j of the TF-IDF matrix is "
                  "the word vectorizer.get_feature_names_out()[j]; its weight is classifier.coef_[0, j].")
        return False
    print(f"Correct! The strongest words for {labels[0]!r}: {', '.join(solutions_text.top_words(tfidf_model, labels[0], 5))}")
    return True
