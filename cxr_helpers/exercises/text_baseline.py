"""Notebook 03's exercise check: the words a TF-IDF logistic regression weighs most for a label."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cxr_helpers.exercises.feedback import NO_ANSWER, correct, not_quite, student_answer
from cxr_helpers.labels import CHEXPERT_LABELS, label_index
from cxr_helpers.text.heads import TfidfBaseline, fit_tfidf

CHECKED_LABELS = ("Pleural Effusion", "Cardiomegaly", "Support Devices", "Pneumothorax")
HAND_MADE_REPORTS = (
    ("small left pleural effusion", {"Pleural Effusion": 1}),
    ("moderate right pleural effusion with basilar atelectasis", {"Pleural Effusion": 1}),
    ("no pleural effusion or pneumothorax", {"Pleural Effusion": 0, "Pneumothorax": 0}),
    ("lungs are clear no effusion", {"Pleural Effusion": 0}),
    ("the heart is enlarged", {"Cardiomegaly": 1}),
    ("moderate cardiomegaly is unchanged", {"Cardiomegaly": 1}),
    ("heart size is normal", {"Cardiomegaly": 0}),
    ("no cardiomegaly", {"Cardiomegaly": 0}),
    ("small apical pneumothorax", {"Pneumothorax": 1}),
    ("no pneumothorax is seen", {"Pneumothorax": 0}),
)


def hand_made_tfidf() -> TfidfBaseline:
    """The workbook's TF-IDF baseline fitted on ten hand-made report sentences."""
    targets = np.full((len(HAND_MADE_REPORTS), len(CHEXPERT_LABELS)), -2)
    for row, (_, labels) in enumerate(HAND_MADE_REPORTS):
        for label, code in labels.items():
            targets[row, label_index(label)] = code
    return fit_tfidf([text for text, _ in HAND_MADE_REPORTS], targets)


def check_top_words(function: Callable[..., list[str] | None], tfidf_model: TfidfBaseline | None = None,
                    k: int = 10) -> bool:
    """Compare ``function(tfidf_model, label, k)`` with ``TfidfBaseline.top_words`` on a hand-made model and ``tfidf_model``."""
    models = [("hand-made", hand_made_tfidf())] + ([("notebook", tfidf_model)] if tfidf_model is not None else [])
    for origin, model in models:
        labels = [label for label in CHECKED_LABELS if model.classifiers[label_index(label)] is not None]
        for label in labels:
            answer = student_answer("top_words", lambda model=model, label=label: function(model, label, k))
            if answer is NO_ANSWER:
                return False
            answer = [str(word) for word in answer]
            reference = [word for word, _ in model.top_words(label, k)]
            if answer == reference:
                continue
            where = f"for {label!r} on the {origin} model"
            if sorted(answer) == sorted(reference):
                return not_quite(f"{where} you have the right words in the wrong order.", "largest coefficient first.")
            if len(answer) != len(reference):
                return not_quite(f"{where} you returned {len(answer)} words.",
                                 "k words, or all of them when the vocabulary is smaller than k.")
            return not_quite(f"{where} your words are not those with the largest coefficients.",
                             "column j of the TF-IDF matrix is the word vectorizer.get_feature_names_out()[j]; "
                             "its weight for the label is classifier.coef_[0, j].")
    return correct("Your words are those with the largest logistic-regression coefficients, largest first.")
