"""Solutions to notebook 03's "Your turn" exercise (checked by cxr_helpers.exercises_text)."""

from __future__ import annotations

import numpy as np

from cxr_helpers.labels import label_index


def top_words(tfidf_model, label: str = "Pleural Effusion", k: int = 10) -> list[str]:
    """The k TF-IDF features (words or word pairs) with the largest coefficients for ``label``, largest first."""
    classifier = tfidf_model.classifiers[label_index(label)]
    if classifier is None:  # one class in the training split: no regression was fit
        return []
    vocabulary = tfidf_model.vectorizer.get_feature_names_out()  # column j of the TF-IDF matrix -> its word
    order = np.argsort(-classifier.coef_[0], kind="stable")[:k]  # coef_ is (1, n_features)
    return [str(vocabulary[i]) for i in order]
