"""A tiny artifacts folder for the explanation tests: cohort, image cache, checkpoints, tiny BERT, ground truth.

Built once per test session (``explain_settings`` in conftest.py) and read by test_explain,
test_explain_browser and test_faithfulness.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from transformers import BertConfig, BertModel, BertTokenizerFast

from cxr_helpers.config import load_settings
from cxr_helpers.fusion.build import META_KEYS
from cxr_helpers.fusion.model import FusionModel
from cxr_helpers.image_model import ImageClassifier
from cxr_helpers.labels import CHEXPERT_LABELS, label_index
from cxr_helpers.reports import clean_text, extract_sections, text_for_setting
from cxr_helpers.text.heads import TextHead
from cxr_helpers.text.tiny_bert import SPECIAL_TOKENS

SIZE = 64
CARDIO, EFFUSION = label_index("Cardiomegaly"), label_index("Pleural Effusion")
REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ year old with cough, study {n}.

 FINDINGS:
 There is {severity} cardiomegaly. There is no pneumothorax.

 IMPRESSION:
 Small left pleural effusion.
"""
SENTENCES = ["mild cardiomegaly", "no pneumothorax", "small left pleural effusion", "the lungs are clear",
             "moderate pulmonary edema", "there is no focal consolidation", "right picc line tip in the svc"]


# ----------------------------------------------------------------------------- tiny models
def tiny_text_tools(hidden: int = 32):
    """A whole-word BERT tokenizer (fixed vocabulary: the same ids every run) and a 1-layer BERT."""



    corpus = [REPORT.format(n=i, severity=s) for i, s in enumerate(("mild", "moderate", "severe"))] + SENTENCES
    words = sorted({word for text in corpus for word in clean_text(text).split()})
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.txt").write_text("\n".join([*SPECIAL_TOKENS, *words]) + "\n")
        tokenizer = BertTokenizerFast.from_pretrained(folder, do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    return tokenizer, BertModel(config).eval()


def split_head_image_model():
    """An ImageClassifier whose Cardiomegaly logit reads channels 0-255 and Pleural Effusion 256-511:
    their Grad-CAMs must differ, whatever the random convolutions are."""
    torch.manual_seed(0)
    model = ImageClassifier(freeze_through="layer2").eval()
    with torch.no_grad():
        linear = model.backbone.fc[1]
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[CARDIO, :256] = 1.0 / 256
        linear.weight[EFFUSION, 256:] = 1.0 / 256
    return model


def tiny_fusion(strategy: str = "concat", text_dim: int = 32, tools=None):
    """An untrained FusionModel with text tools attached (tokenizer + frozen tiny BERT)."""
    torch.manual_seed(1)
    model = FusionModel(ImageClassifier(freeze_through="none"), text_dim, strategy, hidden=16).eval()
    tokenizer, encoder = tools or tiny_text_tools(text_dim)
    model.attach_text_tools(tokenizer, encoder, max_length=64)
    if strategy == "film":  # FiLM starts as the identity; give it some effect of the report
        with torch.no_grad():
            for film in (model.film3, model.film4):
                film.project.weight.normal_(0, 0.5)
    return model


def xray(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """A noisy gray image with a bright disc (float32 (size, size) in [0, 1])."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size * 0.6) ** 2 + (xx - size * 0.45) ** 2) < (size * 0.18) ** 2
    return np.clip(0.3 + 0.1 * rng.standard_normal((size, size)) + 0.5 * disc, 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- a tiny artifacts folder
def _masks(rows: int, cols: int) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[:rows, :cols]
    heart = ((yy - rows * 0.6) ** 2 / (rows * 0.15) ** 2 + (xx - cols * 0.45) ** 2 / (cols * 0.2) ** 2) < 1
    effusion = (yy > rows * 0.78) & (xx > cols * 0.55) & (xx < cols * 0.9)
    return {"Cardiomegaly": heart, "Pleural Effusion": effusion}


def _study_folder(phantom: Path, subject_id: int, study_id: int) -> Path:
    return phantom / "mimic-cxr-jpg" / "files" / f"p{str(subject_id)[:2]}" / f"p{subject_id}" / f"s{study_id}"


def _write_study_images(phantom: Path, rows: list[dict], cache: list[np.ndarray]) -> list[dict]:
    """Each study's frontal JPEG at its MIMIC path, a lateral beside it for every other study (with a mask
    for Pleural Effusion), and the metadata CSV listing them; returns the laterals' visibility rows."""
    metadata, visibility = [], []
    for i, row in enumerate(rows):
        folder = Path(row["image_path"]).parent
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(cache[i]).save(row["image_path"])
        metadata.append({"dicom_id": row["dicom_id"], "subject_id": row["subject_id"], "study_id": row["study_id"],
                         "ViewPosition": "PA"})
        if i % 2:
            continue
        lateral = row["dicom_id"].replace("-0000-0000-0000-", "-1111-0000-0000-")
        image = xray(96, seed=100 + i)[:, :80]
        effusion = _masks(96, 80)["Pleural Effusion"]
        image[effusion] += 0.3
        Image.fromarray(np.uint8(255 * np.clip(image, 0, 1))).save(folder / f"{lateral}.jpg")
        np.savez_compressed(phantom / "ground_truth" / "masks" / f"{lateral}.npz", **{"Pleural Effusion": effusion})
        metadata.append({"dicom_id": lateral, "subject_id": row["subject_id"], "study_id": row["study_id"],
                         "ViewPosition": "LATERAL"})
        visibility.append({"dicom_id": lateral, "study_id": row["study_id"], "label": "Pleural Effusion",
                           "visibility": "clear"})
    pd.DataFrame(metadata).to_csv(phantom / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-metadata.csv", index=False)
    return visibility


def build_artifacts(root: Path, n_studies: int = 8) -> object:
    """Write cohort.csv, images_64.npy, checkpoints, tiny BERT and a hand-made phantom ground truth; return settings."""
    artifacts, phantom = root / "artifacts", root / "phantom"
    truth_dir = phantom / "ground_truth"
    (truth_dir / "masks").mkdir(parents=True)
    (phantom / "mimic-cxr-jpg").mkdir(parents=True)
    reports_dir = phantom / "mimic-cxr-reports"
    reports_dir.mkdir(parents=True)
    rows, cache, spans, visibility, truth = [], [], [], [], []
    for i in range(n_studies):
        study_id, subject_id, dicom_id = 50000000 + i, 10000000 + i, f"{i:08x}-0000-0000-0000-000000000000"
        report = REPORT.format(n=i, severity=("mild", "moderate", "severe")[i % 3])
        report_path = reports_dir / f"s{study_id}.txt"
        report_path.write_text(report)
        sections = extract_sections(report)
        masks = _masks(96, 80)  # JPEG geometry: not square, not the cache size
        np.savez_compressed(truth_dir / "masks" / f"{dicom_id}.npz", **masks)
        image = xray(96, seed=i)[:, :80]
        image[masks["Cardiomegaly"]] += 0.3
        cache.append(np.asarray(Image.fromarray(np.uint8(255 * np.clip(image, 0, 1))).resize((SIZE, SIZE))))
        study_spans = []
        for label, word, code, section in (("Cardiomegaly", "cardiomegaly", 1, "findings"),
                                           ("Pneumothorax", "pneumothorax", 0, "findings"),
                                           ("Pleural Effusion", "pleural effusion", 1, "impression")):
            start = report.index(word)
            study_spans.append({"label": label, "start": start, "end": start + len(word), "code": code,
                                "section": section})
        spans.append({"study_id": study_id, "spans": study_spans})
        visibility += [{"dicom_id": dicom_id, "study_id": study_id, "label": label, "visibility": "clear"}
                       for label in masks]
        truth.append({"study_id": study_id, **{label: int(label in masks) for label in CHEXPERT_LABELS}})
        labels = {label: -2 for label in CHEXPERT_LABELS}
        labels.update({"Cardiomegaly": 1, "Pleural Effusion": 1, "Pneumothorax": 0})
        rows.append({
            "subject_id": subject_id, "study_id": study_id, "dicom_id": dicom_id, "view_position": "PA",
            "split": "test" if i >= n_studies // 2 else "train",
            "image_path": str(_study_folder(phantom, subject_id, study_id) / f"{dicom_id}.jpg"),
            "report_path": str(report_path), "cache_index": i, "indication": sections.get("indication", ""),
            "findings": sections.get("findings", ""), "impression": sections.get("impression", ""),
            "text_findings_impression": text_for_setting(sections, "findings_impression"),
            "text_indication": text_for_setting(sections, "indication"), **labels,
        })
    artifacts.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(artifacts / "cohort.csv", index=False)
    np.save(artifacts / f"images_{SIZE}.npy", np.stack(cache).astype(np.uint8))
    (artifacts / f"images_{SIZE}.json").write_text(json.dumps({"size": SIZE, "count": n_studies, "complete": True,
                                                               "done": [0], "failed": []}))
    visibility += _write_study_images(phantom, rows, cache)
    pd.DataFrame(truth).to_csv(truth_dir / "truth.csv", index=False)
    pd.DataFrame(visibility).to_csv(truth_dir / "images.csv", index=False)
    (truth_dir / "report_spans.jsonl").write_text("".join(json.dumps(s) + "\n" for s in spans))

    tokenizer, encoder = tiny_text_tools()
    tokenizer.save_pretrained(artifacts / "text" / "tiny-bert")
    encoder.save_pretrained(artifacts / "text" / "tiny-bert")
    checkpoints = artifacts / "checkpoints"
    checkpoints.mkdir()
    torch.save({"state_dict": split_head_image_model().state_dict(), "meta": {"name": "image"}}, checkpoints / "image.pt")
    torch.manual_seed(2)
    torch.save({"state_dict": TextHead(32, hidden=16).state_dict(), "meta": {"name": "text_head"}},
               checkpoints / "text_head_findings_impression.pt")
    fusion = tiny_fusion(tools=(tokenizer, encoder))
    meta = {"strategy": "concat", "text_dim": 32, "hidden": 16, "dropout": 0.5, "text_setting": "findings_impression",
            "text_model": "tiny-bert", "image_size": SIZE, "end_to_end": False, "freeze_image": False,
            "pooling": "cls", "max_text_length": 64}
    assert set(META_KEYS) <= set(meta)
    torch.save({"state_dict": fusion.state_dict(), "meta": meta}, checkpoints / "fusion_concat_findings_impression.pt")
    return load_settings(artifacts_dir=artifacts, data_dir=phantom / "mimic-cxr-jpg", reports_dir=reports_dir,
                         image_size=SIZE, text_model="tiny-bert", max_text_length=64, shap_max_evals=20,
                         explain_studies=4, batch_size=16)
