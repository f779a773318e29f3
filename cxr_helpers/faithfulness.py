"""Are the explanations right? Grad-CAM and SHAP checked against the phantom's ground truth.

The phantom knows where each finding was drawn (a mask per finding per image) and which words of
the report state it (character spans), so on the phantom an explanation can be *scored*. Every
check below is reported beside a random baseline, because "the heatmap peak lies in the mask 40%
of the time" means little until we know a random peak would do so 10% of the time.

Images (Grad-CAM, on the fusion model with the report held fixed and on the image-only model),
for truly present findings with a visible mask, mapped into the cache's geometry:
- **pointing game**: is the map's peak inside the mask? Baseline: a RandomCAM map, and the mask's
  share of the image (a uniformly random peak's hit rate).
- **energy inside the mask**: the map's mass inside the mask / total mass. Baseline as above.
- **mask AUROC**: does the map rank mask pixels above the others? 0.5 = chance.
- **ROAD** (remove and debias, pytorch_grad_cam.metrics): the logit change when the most relevant
  pixels are imputed away vs the least relevant ones; higher = the map found pixels the model
  really uses. Baseline: the same for RandomCAM.
Text (SHAP, on the fusion model with the image held fixed and on the text-only model):
- **top-k words**: does one of the k words with the largest SHAP values lie in a span stating the
  finding? Baseline: a random ranking of the words (exact hypergeometric probability).
- **negation**: the SHAP sum over a mention (the finding's words, with the negation cue of a
  negated one: "no pneumothorax") should be positive for a positive mention and negative for a
  negated one. Baseline: the same for a random word set of the same size.
Sanity: **model randomisation** (Adebayo et al. 2018): randomise the trained weights from the top
layer down; an explanation that does not change is not explaining the model. Measured as the
Spearman rank correlation between the original and the randomised explanation.

Nothing here can be checked on MIMIC-CXR itself: it has no masks and no spans.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from cxr_helpers.labels import CHEXPERT_LABELS, label_index

TRUTH_DIR = "ground_truth"
NO_GROUND_TRUTH = (
    "The faithfulness checks need the phantom's ground truth ({path}: masks/, images.csv, report_spans.jsonl). "
    "Only the phantom has it (MIMIC-CXR has no finding masks or word spans); build it with notebook 01 "
    "or `python -m cxr_helpers phantom --out DIR`."
)
TEXT_SECTIONS = {"findings_impression": ("findings", "impression", "last_paragraph"),
                 "indication": ("indication", "history")}
ROAD_PERCENTILES = (30, 70)
ROAD_LIMIT = 20  # findings per model scored by ROAD (its imputation dominates the checks' time on a CPU)
NEGATION_CUES = frozenset({"no", "not", "without", "negative", "free", "absent"})
_RAW_WORD = re.compile(r"[A-Za-z0-9'\u2019]+")


# ----------------------------------------------------------------------------- ground truth
@dataclass
class GroundTruth:
    """The phantom's ground truth: finding masks per image, visibility, report spans, true findings."""

    root: Path
    truth: pd.DataFrame  # index study_id, 14 columns 1/0: the finding really present
    visibility: pd.DataFrame  # dicom_id, study_id, label, visibility (clear / subtle / invisible)
    spans: dict[int, list[dict]]  # study_id -> [{"label", "start", "end", "code", "section"}]
    _masks: dict[str, dict] = field(default_factory=dict, repr=False)

    def present(self, study_id: int, label: str) -> bool:
        """Whether the finding is really in the study (truth.csv)."""
        return int(study_id) in self.truth.index and bool(self.truth.loc[int(study_id), label] == 1)

    def image_visibility(self, dicom_id: str, label: str) -> str | None:
        """clear / subtle / invisible for a drawn finding, None if it was not drawn on this image."""
        rows = self.visibility[(self.visibility["dicom_id"] == dicom_id) & (self.visibility["label"] == label)]
        return None if rows.empty else str(rows["visibility"].iloc[0])

    def raw_mask(self, dicom_id: str, label: str) -> np.ndarray | None:
        """The finding's mask at JPEG resolution (bool), None if the image has no mask for it."""
        if dicom_id not in self._masks:
            path = self.root / "masks" / f"{dicom_id}.npz"
            if not path.exists():
                self._masks[dicom_id] = {}
            else:
                with np.load(path) as stored:
                    self._masks[dicom_id] = {key: stored[key] for key in stored.files}
        return self._masks[dicom_id].get(label)

    def mask(self, dicom_id: str, label: str, size: int) -> np.ndarray | None:
        """The finding's mask in the image cache's geometry (bool (size, size)); None if absent or empty."""
        from cxr_helpers.images import resize_mask

        raw = self.raw_mask(dicom_id, label)
        if raw is None or not raw.any():
            return None
        mask = resize_mask(raw, size)
        if not mask.any():  # a thin finding can cover < 50% of every pixel: keep its best-covered pixels
            coverage = resize_mask(raw, size, threshold=None)
            mask = coverage >= 0.5 * coverage.max()
        return mask

    def study_spans(self, study_id: int) -> list[dict]:
        """The spans of one study's report."""
        return self.spans.get(int(study_id), [])


def phantom_root(settings) -> Path:
    """The phantom's folder (the parent of its mimic-cxr-jpg/)."""
    return Path(settings.data_dir).parent


def load_ground_truth(root: Path) -> GroundTruth:
    """Read ``<root>/ground_truth``; a clear error where there is none (MIMIC)."""
    folder = Path(root) / TRUTH_DIR
    needed = [folder / "truth.csv", folder / "images.csv", folder / "report_spans.jsonl", folder / "masks"]
    if not all(path.exists() for path in needed):
        raise FileNotFoundError(NO_GROUND_TRUTH.format(path=folder))
    truth = pd.read_csv(folder / "truth.csv").set_index("study_id")
    visibility = pd.read_csv(folder / "images.csv", dtype={"dicom_id": str})
    spans = {}
    with open(folder / "report_spans.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                spans[int(record["study_id"])] = list(record["spans"])
    return GroundTruth(folder, truth, visibility, spans)


# ----------------------------------------------------------------------------- heatmap scores
def pointing_game_hit(cam: np.ndarray, mask: np.ndarray) -> bool:
    """True if the heatmap's peak (first maximum) lies inside the mask."""
    cam, mask = np.asarray(cam), np.asarray(mask, dtype=bool)
    if cam.shape != mask.shape:
        raise ValueError(f"heatmap {cam.shape} and mask {mask.shape} differ in shape")
    return bool(mask.flat[int(np.argmax(cam))])


def mask_area_share(mask: np.ndarray) -> float:
    """The mask's share of the image: the pointing-game hit rate and energy share of a random map."""
    return float(np.asarray(mask, dtype=bool).mean())


def energy_inside_mask(cam: np.ndarray, mask: np.ndarray) -> float:
    """The heatmap's mass inside the mask over its total mass (NaN for an all-zero map)."""
    cam = np.clip(np.asarray(cam, dtype=np.float64), 0, None)
    total = cam.sum()
    return float(cam[np.asarray(mask, dtype=bool)].sum() / total) if total > 0 else float("nan")


def mask_auroc(cam: np.ndarray, mask: np.ndarray) -> float:
    """AUROC of heatmap values separating mask pixels from the rest (0.5 = chance, NaN if undefined)."""
    from sklearn.metrics import roc_auc_score

    mask = np.asarray(mask, dtype=bool).ravel()
    if mask.all() or not mask.any():
        return float("nan")
    return float(roc_auc_score(mask, np.asarray(cam, dtype=np.float64).ravel()))


# ----------------------------------------------------------------------------- words and spans
def cleaned_word_offsets(report: str, cleaned_text: str, start_at: int = 0) -> list[tuple[int, int]] | None:
    """Raw-report character offsets of each word of the cleaned text (``reports.clean_text``), or None.

    The cleaned findings+impression text is the report's words from the FINDINGS header on, with
    headers and other sections left out; the words are matched in order (a greedy alignment).
    """
    raw = [(m.start(), m.end(), re.sub(r"['\u2019]", "", m.group().lower())) for m in _RAW_WORD.finditer(report)]
    raw = [w for w in raw if w[0] >= start_at]
    words = cleaned_text.split()
    offsets, j = [], 0
    for word in words:
        while j < len(raw) and raw[j][2] != word:
            j += 1
        if j == len(raw):
            return None
        offsets.append((raw[j][0], raw[j][1]))
        j += 1
    return offsets


def _text_start(report: str, sections: Sequence[str]) -> int:
    """Where the first section a text setting reads begins in the raw report (0 if no header found)."""
    from cxr_helpers.reports import find_headers

    starts = [h.content_start for h in find_headers(report) if h.name in sections]
    return min(starts) if starts else 0


def _sentence_start(report: str, position: int) -> int:
    """Start of the sentence (or clause after a header colon) holding ``position``."""
    cut = max(report.rfind(".", 0, position), report.rfind(":", 0, position), report.rfind("\n\n", 0, position))
    return cut + 1


def span_word_indices(report: str, cleaned_text: str, spans: Sequence[dict], label: str, codes: Sequence[int] = (1,),
                      sections: Sequence[str] = TEXT_SECTIONS["findings_impression"],
                      with_negation_cue: bool = False) -> set[int] | None:
    """Indices of the cleaned text's words that state ``label`` (spans with one of ``codes``).

    ``with_negation_cue`` adds the negation words ("no", "without", ...) that precede a span in
    its sentence, so "there is no [[pneumothorax]]" gives {no, pneumothorax}; other findings
    named in the same list ("no consolidation or pneumothorax") stay out. None if the cleaned text
    cannot be aligned with the report.
    """
    offsets = cleaned_word_offsets(report, cleaned_text, _text_start(report, sections))
    if offsets is None:
        return None
    words = cleaned_text.split()
    chosen = set()
    for span in spans:
        if span["label"] != label or int(span["code"]) not in codes or span.get("section") not in sections:
            continue
        chosen |= {i for i, (a, b) in enumerate(offsets) if a < span["end"] and b > span["start"]}
        if with_negation_cue:
            start = _sentence_start(report, span["start"])
            chosen |= {i for i, (a, b) in enumerate(offsets)
                       if start <= a < span["start"] and words[i] in NEGATION_CUES}
    return chosen


def top_k_hit(values: np.ndarray, relevant: set[int], k: int = 3) -> bool:
    """True if one of the k words with the largest values is relevant."""
    order = np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")[:k]
    return any(int(i) in relevant for i in order)


def random_top_k_hit(n_words: int, n_relevant: int, k: int = 3) -> float:
    """Probability that k words drawn at random (a random ranking) include a relevant one."""
    k = min(k, n_words)
    if n_relevant <= 0 or n_words <= 0:
        return 0.0
    return 1.0 - math.comb(n_words - n_relevant, k) / math.comb(n_words, k)


# ----------------------------------------------------------------------------- randomisation test
def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two explanations (flattened); NaN if one is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.ravel(a)), rankdata(np.ravel(b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def cascading_stages(model: nn.Module) -> list[tuple[str, list[str]]]:
    """Steps of the cascading randomisation, top down: (step name, module names), the head(s) first.

    Every model gets the same steps after its head ("layer4" ... "conv1"), so curves line up.
    """
    resnet = ("layer4", "layer3", "layer2", "layer1", "conv1")
    if hasattr(model, "image_model"):  # fusion.FusionModel: its fusion layers, then the image encoder
        heads = [name for name in ("head", "text_head", "film4", "film3") if hasattr(model, name)]
        if getattr(model, "strategy", "concat") != "concat":
            heads.append("image_model.backbone.fc")  # decision and film use the image model's own head
        return [("head", heads)] + [(n, [f"image_model.backbone.{n}"]) for n in resnet]
    if hasattr(model, "backbone"):  # image_model.ImageClassifier
        return [("head", ["backbone.fc"])] + [(n, [f"backbone.{n}"]) for n in resnet]
    if hasattr(model, "mlp"):  # text_model.TextHead
        return [("head", ["mlp.3", "mlp.0"])]
    raise TypeError(f"no cascading stages known for {type(model).__name__}")


def head_stages(model: nn.Module) -> list[str]:
    """The modules after the encoders (the first cascading step): what SHAP's randomisation re-initialises."""
    return cascading_stages(model)[0][1]


def randomize_modules(model: nn.Module, names: Sequence[str], seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with the named submodules re-initialised (their ``reset_parameters``).

    The fusion model's attached text tools (tokenizer, frozen encoder) are shared, not copied.
    """
    memo = {id(tool): tool for tool in getattr(model, "_text_tools", ()) if tool is not None}
    copied = copy.deepcopy(model, memo)
    modules = dict(copied.named_modules())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in names:
            if name not in modules:
                raise KeyError(f"{type(model).__name__} has no submodule {name!r}")
            for module in modules[name].modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    return copied.eval()


# ----------------------------------------------------------------------------- summaries
def summarise(records: pd.DataFrame, columns: Sequence[str]) -> dict:
    """{"overall": {column: mean, ..., "n"}, "per_label": {label: {...}}}; NaN ignored, n counts the first column's values."""

    def block(frame: pd.DataFrame) -> dict:
        first = pd.to_numeric(frame[columns[0]], errors="coerce") if columns[0] in frame else pd.Series(dtype=float)
        return {"n": int(np.isfinite(first.astype(float)).sum()),
                **{c: (_mean(frame[c]) if c in frame else None) for c in columns}}

    if records is None or records.empty:
        return {"overall": {"n": 0}, "per_label": {}}
    return {"overall": block(records),
            "per_label": {label: block(group) for label, group in records.groupby("label", sort=False)}}


def _mean(values) -> float | None:
    array = pd.to_numeric(pd.Series(values), errors="coerce").astype(float).to_numpy()
    array = array[np.isfinite(array)]
    return float(array.mean()) if len(array) else None


def summary_table(summary: dict) -> pd.DataFrame:
    """One row per (check, model): the score, its random baseline(s) and n, from ``run_faithfulness``'s summary."""
    rows = []
    for check, spec in summary["checks"].items():
        if check == "randomisation":
            continue
        for model, result in spec["models"].items():
            overall = result.get("overall", {})
            rows.append({"check": check, "model": model, "score": overall.get(spec["score"]),
                         "random baseline": overall.get(spec["baseline"]),
                         **({"uniform baseline": overall.get(spec["uniform"])} if spec.get("uniform") else {}),
                         "n": overall.get("n", 0)})
    return pd.DataFrame(rows)


def per_label_table(summary: dict, check: str) -> pd.DataFrame:
    """Per label: each model's score and baseline for one check."""
    spec = summary["checks"][check]
    rows = []
    for model, result in spec["models"].items():
        for label, figures in result.get("per_label", {}).items():
            rows.append({"label": label, "model": model, "score": figures.get(spec["score"]),
                         "random baseline": figures.get(spec["baseline"]), "n": figures.get("n", 0)})
    return pd.DataFrame(rows)


def negation_table(summary: dict) -> pd.DataFrame:
    """Per label and model: mean SHAP sum over positive and over negated mentions, and the sign agreement."""
    rows = []
    for model, result in summary["checks"]["negation"]["models"].items():
        for label, figures in result.get("per_label", {}).items():
            by_code = figures.get("by_code", {})
            rows.append({"label": label, "model": model, "SHAP sum, positive mentions": by_code.get("positive mention"),
                         "n positive": by_code.get("n positive"),
                         "SHAP sum, negated mentions": by_code.get("negated mention"),
                         "n negated": by_code.get("n negated"), "right sign": figures.get("sign_agrees"),
                         "right sign, random words": figures.get("random_sign_agrees")})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the checks on a set of studies
def visible_findings(explainer, truth: GroundTruth, studies: Sequence[int], role: str = "fusion") -> pd.DataFrame:
    """Truly present findings with a visible, non-empty mask on each study's image (one row each)."""
    size = int(explainer.images.shape[-1])
    rows = []
    for study_id in studies:
        dicom_id = str(explainer.row(study_id)["dicom_id"])
        probabilities = explainer.probabilities(study_id, role)
        for label in CHEXPERT_LABELS:
            visibility = truth.image_visibility(dicom_id, label)
            if not truth.present(study_id, label) or visibility in (None, "invisible"):
                continue
            if truth.mask(dicom_id, label, size) is None:
                continue
            p = float(probabilities[label_index(label)])
            rows.append({"study_id": int(study_id), "dicom_id": dicom_id, "label": label, "visibility": visibility,
                         "probability": p, "correct": p >= 0.5})
    return pd.DataFrame(rows, columns=["study_id", "dicom_id", "label", "visibility", "probability", "correct"])


def road_scores(model: nn.Module, image: np.ndarray, cams: Sequence[np.ndarray], labels: Sequence[str],
                percentiles: Sequence[int] = ROAD_PERCENTILES, seed: int = 0) -> np.ndarray:
    """ROADCombined per label (K,): (logit drop removing the least relevant - removing the most relevant) / 2.

    Higher is better: imputing the map's top pixels away should hurt the label's logit more than
    imputing its bottom pixels. The imputation noise is seeded.
    """
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    batch = torch.from_numpy(np.asarray(image, dtype=np.float32))[None, None].repeat(len(labels), 1, 1, 1)  # (K, 1, S, S)
    batch = batch.to(next(model.parameters()).device)
    targets = [ClassifierOutputTarget(label_index(name)) for name in labels]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        scores = ROADCombined(percentiles=list(percentiles))(batch, np.stack(cams), targets, model.eval())
    return np.asarray(scores, dtype=np.float64).reshape(len(labels))


def cam_checks(explainer, truth: GroundTruth, studies: Sequence[int], role: str = "fusion", method: str = "gradcam",
               road_percentiles: Sequence[int] | None = ROAD_PERCENTILES, progress: bool = False,
               road_limit: int | None = ROAD_LIMIT) -> pd.DataFrame:
    """Pointing game, energy inside the mask, mask AUROC and ROAD for each visible present finding,
    for ``method`` and for RandomCAM on the same image (one row per study and label).

    ROAD is scored on the first ``road_limit`` findings only (NaN after; None = all).
    """
    from tqdm.auto import tqdm

    from cxr_helpers.explain import RANDOM_CAM

    cases = visible_findings(explainer, truth, studies, role)
    size = int(explainer.images.shape[-1])
    records = []
    groups = list(cases.groupby("study_id", sort=False))
    for study_id, group in tqdm(groups, desc=f"Grad-CAM checks ({role})", disable=not progress):
        labels = group["label"].tolist()
        cams = explainer.cams(study_id, labels, role, method)
        randoms = explainer.cams(study_id, labels, role, RANDOM_CAM)
        road = road_random = [np.nan] * len(labels)
        if road_percentiles and (road_limit is None or len(records) < road_limit):
            model, _ = explainer.cam_model(study_id, role)
            image = explainer.image(study_id)
            road = road_scores(model, image, [cams[label] for label in labels], labels, road_percentiles)
            road_random = road_scores(model, image, [randoms[label] for label in labels], labels, road_percentiles)
        for i, case in enumerate(group.itertuples(index=False)):
            mask = truth.mask(case.dicom_id, case.label, size)
            cam, random_cam = cams[case.label], randoms[case.label]
            records.append({
                **case._asdict(), "model": role,
                "pointing": float(pointing_game_hit(cam, mask)),
                "pointing_random_cam": float(pointing_game_hit(random_cam, mask)),
                "area_share": mask_area_share(mask),
                "energy": energy_inside_mask(cam, mask), "energy_random_cam": energy_inside_mask(random_cam, mask),
                "auroc": mask_auroc(cam, mask), "auroc_random_cam": mask_auroc(random_cam, mask),
                "road": float(road[i]), "road_random_cam": float(road_random[i]),
            })
    return pd.DataFrame(records)


def _labels_with_code(spans: Sequence[dict], code: int) -> list[str]:
    return list(dict.fromkeys(span["label"] for span in spans if int(span["code"]) == code))


def shap_checks(explainer, truth: GroundTruth, studies: Sequence[int], role: str = "fusion", k: int = 3,
                max_labels: int = 4, seed: int = 0, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(top-k records, mention records) for the SHAP values of ``role`` on each study's report.

    Labels explained per study: those the report states positively (top-k check and positive
    mentions), then those it negates (negation check), at most ``max_labels``.
    """
    from tqdm.auto import tqdm

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
        explanations = explainer.shap_values(study_id, labels, role)
        probabilities = explainer.probabilities(study_id, role)
        for label in labels:
            values = explanations[label].values
            n_words = len(values)
            if n_words != len(cleaned.split()):
                skipped += 1
                continue
            p = float(probabilities[label_index(label)])
            if label in positives:
                relevant = span_word_indices(report, cleaned, spans, label, (1,), sections)
                if relevant:
                    top_k.append({"study_id": int(study_id), "label": label, "model": role, "probability": p,
                                  "correct": p >= 0.5, "truly_present": truth.present(study_id, label),
                                  "hit": float(top_k_hit(values, relevant, k)),
                                  "hit_random": random_top_k_hit(n_words, len(relevant), k),
                                  "n_words": n_words, "n_relevant": len(relevant)})
            for code, expected in ((1, 1.0), (0, -1.0)):
                mention = span_word_indices(report, cleaned, spans, label, (code,), sections, with_negation_cue=True)
                if not mention:
                    continue
                value = float(values[sorted(mention)].sum())
                random_value = float(values[rng.choice(n_words, size=len(mention), replace=False)].sum())
                mentions.append({"study_id": int(study_id), "label": label, "model": role, "code": code,
                                 "mention": " ".join(cleaned.split()[i] for i in sorted(mention)),
                                 "mention_value": value, "random_value": random_value,
                                 "sign_agrees": float(np.sign(value) == expected),
                                 "random_sign_agrees": float(np.sign(random_value) == expected)})
    if skipped:
        print(f"SHAP checks ({role}): {skipped} explanations skipped (their words did not match the cleaned text)")
    return pd.DataFrame(top_k), pd.DataFrame(mentions)


def _constant(array: np.ndarray) -> bool:
    return bool(np.ptp(np.asarray(array)) == 0)


def randomisation_checks(explainer, studies: Sequence[int], method: str = "gradcam", seed: int = 0,
                         progress: bool = False) -> pd.DataFrame:
    """Spearman correlation between each model's explanation and that of its randomised copy.

    Grad-CAM: cascading randomisation from the head down to conv1 (one row per step). SHAP: the
    layers after the encoders (the text head, or the fusion layers) randomised at once. A map
    that turns constant after randomisation counts as correlation 0 (it ranks nothing any more).
    """
    from tqdm.auto import tqdm

    from cxr_helpers.explain import (
        FixedTextImageModel,
        compute_cams,
        explain_text,
        fusion_text_logit_fn,
        text_head_logit_fn,
    )

    records = []
    for study_id in tqdm(list(studies), desc="randomisation test", disable=not progress):
        for role in ("fusion", "image"):
            if not explainer.has(role):
                continue
            model = explainer.models.get(role)
            label = explainer.top_labels(study_id, role, 1)[0]
            original = explainer.cams(study_id, [label], role, method)[label]
            image = explainer.image_tensor(study_id)
            stages = cascading_stages(model)
            for step in range(1, len(stages) + 1):
                randomised = randomize_modules(model, [m for _, names in stages[:step] for m in names], seed)
                if role == "fusion":
                    cam_model = FixedTextImageModel(randomised, explainer.text_embedding(study_id))
                    layer = randomised.image_target_layer()
                else:
                    cam_model, layer = randomised, randomised.target_layer
                cam = compute_cams(cam_model, layer, image, [label_index(label)], method)[0]
                rho = 0.0 if _constant(cam) and not _constant(original) else rank_correlation(original, cam)
                records.append({"kind": "Grad-CAM", "model": role, "study_id": int(study_id), "label": label,
                                "step": step, "randomised_through": stages[step - 1][0], "spearman": rho})
        for role in ("fusion", "text"):
            if not explainer.has(role) or not explainer.text(study_id).strip():
                continue
            model = explainer.models.get(role)
            label = explainer.top_labels(study_id, role, 1)[0]
            original = explainer.shap_values(study_id, [label], role)[label].values
            stages = head_stages(model)
            randomised = randomize_modules(model, stages, seed)
            if role == "text":
                m = explainer.models
                logit_fn = text_head_logit_fn(randomised, m.tokenizer, m.encoder, explainer.max_length,
                                              explainer.pooling, explainer.batch_size)
            else:
                logit_fn = fusion_text_logit_fn(randomised, explainer.image_tensor(study_id), explainer.batch_size)
            values = explain_text(logit_fn, explainer.text(study_id), [label], explainer.shap_max_evals)[label].values
            rho = 0.0 if _constant(values) and not _constant(original) else rank_correlation(original, values)
            records.append({"kind": "SHAP", "model": role, "study_id": int(study_id), "label": label, "step": 1,
                            "randomised_through": "head", "spearman": rho})
    return pd.DataFrame(records)


# ----------------------------------------------------------------------------- everything, into faithfulness.json
CHECKS = {
    # name: (records key, score column, random baseline column, uniform baseline column or None, description)
    "pointing_game": ("cam", "pointing", "pointing_random_cam", "area_share",
                      "share of findings whose heatmap peak lies inside the finding's mask"),
    "energy_inside_mask": ("cam", "energy", "energy_random_cam", "area_share",
                           "share of the heatmap's mass inside the finding's mask"),
    "mask_auroc": ("cam", "auroc", "auroc_random_cam", None,
                   "AUROC of heatmap values for mask vs other pixels (0.5 = chance)"),
    "road": ("cam", "road", "road_random_cam", None,
             "ROADCombined: logit drop removing least minus most relevant pixels, halved (higher = better)"),
    "shap_top_k": ("top_k", "hit", "hit_random", None,
                   "share of positively stated findings with one of the top-k SHAP words inside the stating span"),
    "negation": ("mentions", "sign_agrees", "random_sign_agrees", None,
                 "share of mentions whose SHAP sum has the right sign (+ positive mention, - negated)"),
}


CHECK_TITLES = {"pointing_game": "pointing game", "energy_inside_mask": "energy inside mask",
                "mask_auroc": "mask AUROC", "road": "ROAD (higher = better)", "shap_top_k": "SHAP top-k words",
                "negation": "negation sign"}


@dataclass
class FaithfulnessResult:
    """What ``run_faithfulness`` measured: the JSON summary and the per-case records behind it."""

    summary: dict
    cam: dict[str, pd.DataFrame]  # role -> cam_checks records
    top_k: dict[str, pd.DataFrame]  # role -> shap_checks top-k records
    mentions: dict[str, pd.DataFrame]  # role -> shap_checks mention records
    randomisation: pd.DataFrame
    path: Path | None = None


def _subset(records: pd.DataFrame, check: str, correct_only: bool) -> pd.DataFrame:
    if records.empty or not correct_only or "correct" not in records:
        return records
    return records[records["correct"].astype(bool)]


def _mention_means(mentions: pd.DataFrame) -> dict:
    """Mean SHAP sum over positive and over negated mentions (they should differ in sign)."""
    return {"positive mention": _mean(mentions.loc[mentions["code"] == 1, "mention_value"]),
            "negated mention": _mean(mentions.loc[mentions["code"] == 0, "mention_value"]),
            "n positive": int((mentions["code"] == 1).sum()), "n negated": int((mentions["code"] == 0).sum())}


def summarise_checks(cam: dict, top_k: dict, mentions: dict, randomisation: pd.DataFrame,
                     correct_only: bool = True) -> dict:
    """The ``checks`` block of faithfulness.json: per check and model, overall and per label, with baselines."""
    sources = {"cam": cam, "top_k": top_k, "mentions": mentions}
    checks = {}
    for name, (source, score, baseline, uniform, description) in CHECKS.items():
        columns = [c for c in (score, baseline, uniform) if c]
        models = {}
        for role, records in sources[source].items():
            chosen = _subset(records, name, correct_only)
            if name == "negation" and not chosen.empty:
                models[role] = summarise(chosen, columns)
                models[role]["overall"]["by_code"] = _mention_means(chosen)
                for label, group in chosen.groupby("label", sort=False):
                    models[role]["per_label"][label]["by_code"] = _mention_means(group)
            else:
                models[role] = summarise(chosen, columns)
        checks[name] = {"description": description, "score": score, "baseline": baseline, "uniform": uniform,
                        "subset": "correctly predicted (p >= 0.5)" if correct_only and source != "mentions" else "all",
                        "models": models}
    rand = {}
    if not randomisation.empty:
        for (kind, role), group in randomisation.groupby(["kind", "model"], sort=False):
            steps = group.groupby(["step", "randomised_through"], sort=True)["spearman"]
            rand[f"{kind} {role}"] = [{"step": int(step), "randomised_through": through, "spearman": _mean(values),
                                       "n": int(values.notna().sum())} for (step, through), values in steps]
    checks["randomisation"] = {
        "description": "Spearman rank correlation between the explanation of the trained model and of a copy with "
                       "its weights randomised from the top down (should fall towards 0)",
        "score": "spearman", "baseline": None, "models": rand,
    }
    return checks


def run_faithfulness(settings, explainer=None, studies: Sequence[int] | None = None, k: int | None = None,
                     road_percentiles: Sequence[int] | None = ROAD_PERCENTILES, randomisation_studies: int | None = None,
                     write: bool = True, progress: bool = True) -> FaithfulnessResult:
    """All checks on the first ``settings.explain_studies`` test studies; writes metrics/faithfulness.json.

    Image checks for the fusion and image-only models, text checks for the fusion and text-only
    models, the randomisation test on ``randomisation_studies`` studies (default 3, 1 with CXR_FAST). Scores are over correctly
    predicted findings (p >= 0.5); ``faithfulness.json`` also holds them over all present findings.
    """
    from cxr_helpers.explain import CAM_ROLES, SHAP_ROLES, StudyExplainer

    truth = load_ground_truth(phantom_root(settings))
    explainer = explainer or StudyExplainer.from_settings(settings)
    studies = list(studies) if studies is not None else explainer.study_ids("test")[: settings.explain_studies]
    k = int(k or settings.top_k_labels)
    method = explainer.cam_method
    cam = {role: cam_checks(explainer, truth, studies, role, method, road_percentiles, progress)
           for role in CAM_ROLES if explainer.has(role)}
    top_k, mentions = {}, {}
    for role in SHAP_ROLES:
        if explainer.has(role):
            top_k[role], mentions[role] = shap_checks(explainer, truth, studies, role, k, progress=progress)
    if randomisation_studies is None:
        randomisation_studies = 1 if settings.fast else 3
    randomisation = randomisation_checks(explainer, studies[:randomisation_studies], method, progress=progress)
    summary = {
        "phantom": str(truth.root.parent),
        "studies": [int(s) for s in studies],
        "n_studies": len(studies),
        "cam_method": method,
        "shap_max_evals": int(explainer.shap_max_evals),
        "top_k_words": k,
        "road_percentiles": list(road_percentiles or []),
        "road_limit_per_model": ROAD_LIMIT,
        "models": dict(explainer.models.names),
        "checks": summarise_checks(cam, top_k, mentions, randomisation, correct_only=True),
        "checks_all_present": summarise_checks(cam, top_k, mentions, randomisation, correct_only=False),
    }
    path = None
    if write:
        path = Path(settings.artifacts_dir) / "metrics" / "faithfulness.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        tmp.replace(path)
    return FaithfulnessResult(summary, cam, top_k, mentions, randomisation, path)


# ----------------------------------------------------------------------------- figures
def plot_checks(summary: dict, title: str = "Are the explanations right? (phantom ground truth)"):
    """One panel per check: each model's score beside its random baseline."""
    import matplotlib.pyplot as plt

    table = summary_table(summary)
    checks = list(dict.fromkeys(table["check"]))
    figure, axes = plt.subplots(1, len(checks), figsize=(2.6 * len(checks), 3.4), squeeze=False)
    for axis, check in zip(axes[0], checks, strict=True):
        rows = table[table["check"] == check]
        x = np.arange(len(rows))
        score = rows["score"].astype(float).to_numpy()
        baseline = rows["random baseline"].astype(float).to_numpy()
        axis.bar(x - 0.2, score, 0.4, label="explanation", color="#c0392b")
        axis.bar(x + 0.2, baseline, 0.4, label="random baseline", color="#95a5a6")
        axis.set_xticks(x, [f"{m}\nn={n}" for m, n in zip(rows["model"], rows["n"], strict=True)], fontsize=8)
        axis.set_title(CHECK_TITLES.get(check, check), fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_randomisation(randomisation: pd.DataFrame, title: str = "Model randomisation test"):
    """Mean Spearman correlation between original and randomised explanations, per randomisation step."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.4))
    if randomisation.empty:
        axis.text(0.5, 0.5, "no randomisation records", ha="center", transform=axis.transAxes)
        return figure
    cams = randomisation[randomisation["kind"] == "Grad-CAM"]
    for role, group in cams.groupby("model", sort=False):
        means = group.groupby("step")["spearman"].mean()
        axis.plot(means.index, means.to_numpy(), marker="o", label=f"Grad-CAM, {role} model")
    shap = randomisation[randomisation["kind"] == "SHAP"]
    for offset, (role, group) in zip((-0.08, 0.08), shap.groupby("model", sort=False), strict=False):
        axis.scatter([1 + offset], [group["spearman"].mean()], marker="s", s=60, label=f"SHAP, {role} model (head)")
    steps = cams.drop_duplicates("step").sort_values("step") if not cams.empty else cams
    if not steps.empty:
        axis.set_xticks(steps["step"], steps["randomised_through"], fontsize=8)
    axis.axhline(1.0, color="black", lw=0.6, ls=":")
    axis.axhline(0.0, color="black", lw=0.6)
    axis.set(xlabel="randomised from the top down to", ylabel="Spearman vs trained", ylim=(-0.5, 1.05), title=title)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure
