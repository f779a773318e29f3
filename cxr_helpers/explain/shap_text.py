"""SHAP (shap's partition explainer) on report words: each word's share of one label's logit.

Words are masked by replacing them with ``[MASK]`` (consecutive masked words share one), the
token both CXR-BERT and the phantom's tiny BERT saw during masked-language-model pretraining;
deleting words instead would also shift every later word's position. The masker splits on
non-word characters (``r"\\W+"``); the reports are already cleaned (lower case, no punctuation).
Values explain the *logit* (as Grad-CAM does): base value + sum of word values = the model's
logit for the report (SHAP's additivity, which holds on whatever output scale is explained);
the probability is ``sigmoid(base value + sum)``.
"""

from __future__ import annotations

import dataclasses
import html
import re
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from cxr_helpers.config import seeded_numpy
from cxr_helpers.labels import label_index

SHAP_MASK_TOKEN = "[MASK] "  # trailing space: a mask never glues onto the next word
WORD_SPLIT = r"\W+"


def import_shap():
    """``import shap`` without its deprecation warnings under new matplotlib (filtered, not errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        import shap
    return shap


def word_masker(mask_token: str = SHAP_MASK_TOKEN):
    """shap's Text masker on whole words (split on ``\\W+``), masked words replaced by ``[MASK]``."""
    shap = import_shap()
    return shap.maskers.Text(WORD_SPLIT, mask_token=mask_token, collapse_mask_token=True)


@dataclasses.dataclass
class TextExplanation:
    """SHAP values of one label over the words of one report, on the logit scale."""

    label: str
    tokens: list[str]  # the report's words, as shap split them (trailing separators kept)
    values: np.ndarray  # (T,) one value per word: > 0 pushes towards the label (red), < 0 away (blue)
    base_value: float  # the logit with every word masked
    output: float  # the logit of the whole report = base_value + values.sum()

    @property
    def probability(self) -> float:
        """The model's probability for the label on the whole report."""
        return float(1.0 / (1.0 + np.exp(-self.output)))

    @property
    def words(self) -> list[str]:
        """The tokens without their trailing separators."""
        return [t.strip() for t in self.tokens]

    def top_words(self, k: int = 5) -> list[tuple[str, float]]:
        """The k words pushing hardest towards the label, with their values."""
        order = np.argsort(-self.values, kind="stable")[:k]
        return [(self.words[i], float(self.values[i])) for i in order]

    def to_shap(self):
        """As a single-output shap.Explanation (for shap.plots.text and friends)."""
        shap = import_shap()
        return shap.Explanation(
            values=np.asarray(self.values, dtype=float), base_values=float(self.base_value),
            data=np.asarray(self.tokens, dtype=object),
        )

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"label": self.label, "tokens": list(self.tokens), "values": [float(v) for v in self.values],
                "base_value": float(self.base_value), "output": float(self.output)}

    @classmethod
    def from_dict(cls, data: Mapping) -> TextExplanation:
        """Inverse of ``to_dict``."""
        return cls(data["label"], list(data["tokens"]), np.asarray(data["values"], dtype=np.float64),
                   float(data["base_value"]), float(data["output"]))


def explain_text(
    logit_fn: Callable[[Sequence[str]], np.ndarray],
    text: str,
    labels: Sequence[str],
    max_evals: int = 300,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, TextExplanation]:
    """SHAP (partition explainer, word masking) of each label's logit on one report: {label: TextExplanation}.

    ``logit_fn(texts) -> (N, 14)`` logits. Each label is explained on its own, with NumPy's global
    random state seeded (shap breaks ties with it): when ``max_evals`` stops the explainer before
    the word tree is fully split, the result then depends neither on chance nor on which other
    labels were asked for, so a cached value means the same thing whoever computed it.
    """
    shap = import_shap()
    if not str(text).strip():
        raise ValueError("cannot explain an empty report: it has no words")
    explanations = {}
    for name in labels:
        column = label_index(name)

        def label_logit(texts, column=column) -> np.ndarray:
            return np.asarray(logit_fn([str(t) for t in texts]), dtype=np.float64)[:, column]  # (N,)

        explainer = shap.Explainer(label_logit, word_masker())
        with seeded_numpy(seed), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = explainer([str(text)], max_evals=max(int(max_evals), 2), batch_size=batch_size, silent=True)
        values = np.asarray(result.values[0], dtype=np.float64).reshape(-1)  # (T,)
        base = float(np.asarray(result.base_values).reshape(-1)[0])
        tokens = [str(t) for t in result.data[0]]
        explanations[name] = TextExplanation(name, tokens, values, base, float(base + values.sum()))
    return explanations


_NUMPY_SCALAR = re.compile(r"np\.(?:float|int)(?:16|32|64)\(([^()]*)\)")


def fix_shap_colours(page: str) -> str:
    """Make shap's colours valid CSS again under NumPy 2.

    shap <= 0.51 writes colours as ``rgba(np.float64(255.0), ...)`` under NumPy 2 (shap issue
    #4146, fixed upstream in PR #4332): browsers ignore such a colour and the words lose their
    red/blue. Writing the plain numbers back changes nothing where shap is already fixed.
    """
    return _NUMPY_SCALAR.sub(r"\1", page)


def shap_text_html(explanation: TextExplanation, heading: bool = True) -> str:
    """The report coloured by SHAP (red towards the label, blue away): shap.plots.text's HTML, no scripts."""
    shap = import_shap()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body = fix_shap_colours(shap.plots.text(explanation.to_shap(), display=False))
    if not heading:
        return body
    title = (
        f"<div style='font-weight:bold;margin-top:6px'>{explanation.label}: p = {explanation.probability:.2f}"
        f" <span style='font-weight:normal;color:#666'>(logit {explanation.output:+.2f} = base "
        f"{explanation.base_value:+.2f} + word values {explanation.values.sum():+.2f})</span></div>"
    )
    return title + body


def shap_report_html(explanations: Sequence[TextExplanation]) -> str:
    """Several labels' SHAP text plots stacked, as in the paper's Figures 9 to 11."""
    return "\n".join(f"<div style='margin-bottom:8px'>{shap_text_html(e)}</div>" for e in explanations)


def shap_html_page(explanations: Sequence[TextExplanation], title: str, note: str = "") -> str:
    """A standalone HTML page with SHAP text plots (opens in any web browser)."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body style='font-family:sans-serif;max-width:1100px'>"
        f"<h2>{html.escape(title)}</h2><p>{note}</p>{shap_report_html(explanations)}</body></html>"
    )


# ----------------------------------------------------------------------------- several labels on one colour scale
SHAP_RED, SHAP_BLUE = (214, 39, 40), (31, 119, 180)  # towards the label, away from it
UNDERLINE_STYLE = "text-decoration:underline 2px #ff00ff;text-underline-offset:3px;"  # figures.TRUTH_COLOUR


def shared_scale(explanations: Sequence[TextExplanation]) -> float:
    """The largest |word value| over all the explanations: full colour on one scale for every label shown."""
    largest = max((float(np.max(np.abs(e.values))) for e in explanations if len(e.values)), default=0.0)
    return largest if largest > 0 else 1.0


def word_style(value: float, scale: float) -> str:
    """CSS for one word: red (> 0) or blue (< 0), opacity |value| / scale; white text on strong colours."""
    strength = float(np.clip(abs(value) / scale, 0.0, 1.0))
    red, green, blue = SHAP_RED if value > 0 else SHAP_BLUE
    text = "color:white;" if strength > 0.6 else ""
    return f"background:rgba({red},{green},{blue},{strength:.2f});{text}"


def shap_scale_legend_html(scale: float) -> str:
    """A colour bar from -scale (blue) through 0 to +scale (red), with its numbers."""
    blue, red = ",".join(map(str, SHAP_BLUE)), ",".join(map(str, SHAP_RED))
    bar = (f"<span style='display:inline-block;width:160px;height:10px;vertical-align:middle;background:"
           f"linear-gradient(to right,rgb({blue}),rgba({blue},0) 50%,rgba({red},0) 50%,rgb({red}))'></span>")
    return (f"<div style='font-size:11px;color:#444'>word value (logit) {-scale:+.3g} {bar} {scale:+.3g}"
            " &nbsp; one scale for every label shown</div>")


def token_words(explanation: TextExplanation) -> list[int]:
    """For each token, the index of its word in ``text.split()`` (tokens are words plus their separators)."""
    index, positions = 0, []
    for token in explanation.tokens:
        positions.append(index)
        index += len(token.split()) or 0
    return [min(p, max(index - 1, 0)) for p in positions]


def shap_words_html(explanation: TextExplanation, scale: float, underline: frozenset[int] | set[int] = frozenset()) -> str:
    """One label's words coloured on ``scale``; words whose index (in ``text.split()``) is in ``underline`` underlined."""
    words = []
    for token, value, word_index in zip(explanation.tokens, explanation.values, token_words(explanation), strict=True):
        if not token.strip():
            continue
        style = word_style(float(value), scale) + (UNDERLINE_STYLE if word_index in underline else "")
        words.append(f"<span title='{float(value):+.3g}' style='{style}padding:0 1px;border-radius:2px'>"
                     f"{html.escape(token.strip())}</span>")
    return "<div style='line-height:1.9;font-size:12px'>" + " ".join(words) + "</div>"


def shap_labels_html(explanations: Sequence[TextExplanation],
                     underline: Mapping[str, set[int]] | None = None, scale: float | None = None) -> str:
    """Several labels' word values on one shared colour scale, each headed by p and logit = base + sum, and a legend."""
    scale = shared_scale(explanations) if scale is None else scale
    blocks = [shap_scale_legend_html(scale)]
    for e in explanations:
        blocks.append(
            f"<div style='margin-top:6px;font-size:12px'><b>{html.escape(e.label)}</b>: p = {e.probability:.2f}"
            f" <span style='color:#666'>(logit {e.output:+.2f} = base {e.base_value:+.2f} + words "
            f"{e.values.sum():+.2f})</span></div>" + shap_words_html(e, scale, (underline or {}).get(e.label, set())))
    return "".join(blocks)
