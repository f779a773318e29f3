"""SHAP against the words that state a finding: are the top words in the stating span, does negation flip the sign?

For each test study, the labels its report states (positively, then negated) are explained on
the text the model read; the phantom's character spans say which of those words state each
finding. Two checks, each beside a random baseline: one of the top-k words lies in the stating
span (baseline: a random ranking; reported again for the whole sentence that holds the span, to
tell "the wrong words" from "the right sentence, spread over its modifiers", and for the span
widened by the finding's own words, those that in the training reports come only with it:
``spans.finding_words``), and the SHAP sum over a mention ("small apical pneumothorax",
or "no pneumothorax" with its negation cue) has the sign of the mention (baseline: a random word
set of the same size). Each top-k record keeps its top words, to read the misses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cxr_helpers.explain.faithfulness.scores import random_top_k_hit, top_k_hit, top_k_words
from cxr_helpers.explain.faithfulness.spans import TEXT_SECTIONS, sentence_spans, span_word_indices
from cxr_helpers.labels import label_index
from cxr_helpers.phantom.truth import GroundTruth


def _labels_with_code(spans: Sequence[dict], code: int) -> list[str]:
    """The labels stated with ``code`` (1 positive, 0 negated) in these spans, in order of first mention."""
    return list(dict.fromkeys(span["label"] for span in spans if int(span["code"]) == code))


def shap_checks(explainer, truth: GroundTruth, studies: Sequence[int], role: str = "fusion", k: int = 3,
                max_labels: int = 4, seed: int = 0, progress: bool = False,
                own_words: Mapping[str, frozenset[str]] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(top-k records, mention records) for the SHAP values of ``role`` on each study's report.

    Labels explained per study: those the report states positively (top-k check and positive
    mentions), then those it negates (negation check), at most ``max_labels``. With ``own_words``
    (``spans.finding_words`` of the training reports) the top-k check is also scored against the
    span plus the finding's own words (``hit_own``).
    """
    sections = TEXT_SECTIONS[explainer.text_setting]
    rng = np.random.default_rng(seed)
    top_k, mentions, skipped = [], [], 0
    for study_id in tqdm(list(studies), desc=f"SHAP checks ({role})", disable=not progress):
        cleaned = explainer.text(study_id)
        spans = [s for s in truth.study_spans(study_id) if s.get("section") in sections]
        positives, negated = _labels_with_code(spans, 1), _labels_with_code(spans, 0)
        labels = (positives + [name for name in negated if name not in positives])[:max_labels]
        if not cleaned.strip() or not labels:
            continue
        report = Path(explainer.row(study_id)["report_path"]).read_text(encoding="utf-8")
        words = cleaned.split()
        explanations = explainer.shap_values(study_id, labels, role)
        probabilities = explainer.probabilities(study_id, role)
        for label in labels:
            values = explanations[label].values
            n_words = len(values)
            if n_words != len(words):
                skipped += 1
                continue
            p = float(probabilities[label_index(label)])
            if label in positives:
                relevant = span_word_indices(report, cleaned, spans, label, (1,), sections)
                sentence = span_word_indices(report, cleaned, sentence_spans(report, spans), label, (1,), sections)
                if relevant:
                    record = {"study_id": int(study_id), "label": label, "model": role, "probability": p,
                              "correct": p >= 0.5, "truly_present": truth.present(study_id, label),
                              "top_words": " ".join(words[i] for i in top_k_words(values, k)),
                              "hit": float(top_k_hit(values, relevant, k)),
                              "hit_random": random_top_k_hit(n_words, len(relevant), k),
                              "hit_sentence": float(top_k_hit(values, sentence, k)),
                              "hit_sentence_random": random_top_k_hit(n_words, len(sentence), k),
                              "n_words": n_words, "n_relevant": len(relevant)}
                    if own_words is not None:
                        own = relevant | {i for i, word in enumerate(words) if word in own_words.get(label, ())}
                        record.update(hit_own=float(top_k_hit(values, own, k)),
                                      hit_own_random=random_top_k_hit(n_words, len(own), k))
                    top_k.append(record)
            for code, expected in ((1, 1.0), (0, -1.0)):
                mention = span_word_indices(report, cleaned, spans, label, (code,), sections, with_negation_cue=True)
                if not mention:
                    continue
                value = float(values[sorted(mention)].sum())
                random_value = float(values[rng.choice(n_words, size=len(mention), replace=False)].sum())
                mentions.append({"study_id": int(study_id), "label": label, "model": role, "code": code,
                                 "mention": " ".join(words[i] for i in sorted(mention)),
                                 "mention_value": value, "random_value": random_value,
                                 "sign_agrees": float(np.sign(value) == expected),
                                 "random_sign_agrees": float(np.sign(random_value) == expected)})
    if skipped:
        print(f"SHAP checks ({role}): {skipped} explanations skipped (their words did not match the cleaned text)")
    return pd.DataFrame(top_k), pd.DataFrame(mentions)
