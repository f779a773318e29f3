"""A study's images (frontal and lateral views), and the models' Grad-CAMs and probabilities on any of them.

The cohort keeps one image per study (the frontal one the models read, in the image cache); the
study's other images sit beside it in the layout (``.../sSTUDY/DICOM_ID.jpg``), their
ViewPosition in the layout's metadata CSV. On those the models are shown outside what they were
trained on; their maps and probabilities are computed on demand and kept in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxr_helpers.explain.gradcam import cam_layer_for, cam_method_for, cams_for_labels, check_cam_method
from cxr_helpers.images import load_image
from cxr_helpers.mimic import METADATA_CSV, VIEW_PREFERENCE, find_csv


@dataclass(frozen=True)
class StudyImage:
    """One image of a study."""

    dicom_id: str
    view_position: str  # PA, AP, LATERAL, LL, ... ("" where the metadata does not say)
    path: Path | None
    model_input: bool  # the image the models read (the cohort's, from the image cache)

    @property
    def name(self) -> str:
        """What the view picker says."""
        view = self.view_position or "other view"
        return f"{view} (models' input)" if self.model_input else view


class StudyViews:
    """The images of each study, their pixels, and the models' probabilities and Grad-CAMs on them."""

    def __init__(self, explainer, data_dir: Path | None = None):
        self.explainer = explainer
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.size = int(explainer.images.shape[-1])
        self.computed = 0  # CAMs computed on views other than the models' input
        self._metadata: pd.DataFrame | None = None
        self._images: dict[int, list[StudyImage]] = {}
        self._memory: dict[tuple, object] = {}

    def metadata(self) -> pd.DataFrame:
        """The layout's metadata (dicom_id, study_id, view_position), read once; empty where there is none."""
        if self._metadata is None:
            path = find_csv(self.data_dir, METADATA_CSV, required=False) if self.data_dir is not None else None
            if path is None:
                self._metadata = pd.DataFrame(columns=["dicom_id", "study_id", "view_position"])
            else:
                table = pd.read_csv(path, usecols=["dicom_id", "study_id", "ViewPosition"], dtype=str)
                self._metadata = pd.DataFrame({
                    "dicom_id": table["dicom_id"].str.strip(),
                    "study_id": pd.to_numeric(table["study_id"], errors="coerce").fillna(-1).astype(np.int64),
                    "view_position": table["ViewPosition"].fillna("").str.strip().str.upper(),
                })
        return self._metadata

    def images(self, study_id: int) -> list[StudyImage]:
        """The study's images: the models' input first, then the others found beside it (frontal before lateral)."""
        study_id = int(study_id)
        if study_id not in self._images:
            row = self.explainer.row(study_id)
            own = str(row["dicom_id"])
            view = row.get("view_position", "")
            first = StudyImage(own, "" if pd.isna(view) else str(view), Path(str(row["image_path"])), True)
            folder = Path(str(row["image_path"])).parent
            table = self.metadata()
            listed = table[table["study_id"] == study_id]
            if len(listed):
                views = dict(zip(listed["dicom_id"], listed["view_position"], strict=True))
            else:  # no metadata: every JPEG in the study's folder, view unknown
                views = {p.stem: "" for p in sorted(folder.glob("*.jpg"))} if folder.is_dir() else {}
            others = [StudyImage(d, v, folder / f"{d}.jpg", False) for d, v in views.items()
                      if d != own and (folder / f"{d}.jpg").is_file()]
            others.sort(key=lambda i: (VIEW_PREFERENCE.get(i.view_position, len(VIEW_PREFERENCE)), i.dicom_id))
            self._images[study_id] = [first, *others]
        return self._images[study_id]

    def image(self, study_id: int, dicom_id: str | None = None) -> StudyImage:
        """One image of the study (the models' input when ``dicom_id`` is None or not the study's)."""
        found = self.images(study_id)
        return next((i for i in found if i.dicom_id == dicom_id), found[0])

    def pixels(self, study_id: int, dicom_id: str | None = None) -> np.ndarray:
        """The image as float32 (S, S) in [0, 1], in the image cache's geometry."""
        chosen = self.image(study_id, dicom_id)
        if chosen.model_input:
            return self.explainer.image(study_id)
        key = ("pixels", chosen.dicom_id)
        if key not in self._memory:
            self._memory[key] = load_image(chosen.path, self.size)
        return self._memory[key]

    def probabilities(self, study_id: int, dicom_id: str | None, role: str) -> np.ndarray:
        """The model's probabilities (14,) on this image (the fusion model with the study's report)."""
        chosen = self.image(study_id, dicom_id)
        if chosen.model_input:
            return self.explainer.probabilities(study_id, role)
        key = ("p", chosen.dicom_id, role)
        if key not in self._memory:
            model, _ = self.explainer.cam_model(study_id, role, "layer4")  # image -> logits (report held fixed)
            tensor = torch.from_numpy(self.pixels(study_id, dicom_id))[None, None]
            device = next(model.parameters()).device
            with torch.no_grad():
                logits = model.eval()(tensor.to(device))[0].double().cpu().numpy()
            self._memory[key] = 1.0 / (1.0 + np.exp(-logits))
        return self._memory[key]

    def cams(self, study_id: int, dicom_id: str | None, labels: Sequence[str], role: str, method: str,
             layer: str) -> dict[str, np.ndarray]:
        """{label: CAM (S, S)} on this image: the explainer's cache for the models' input, else memory."""
        chosen = self.image(study_id, dicom_id)
        if chosen.model_input:
            return self.explainer.cams(study_id, labels, role, method, layer)
        method = check_cam_method(method)
        found = {}
        for label in labels:
            how, name = cam_method_for(label, method), cam_layer_for(label, layer)
            key = ("cam", chosen.dicom_id, role, label, how, name)
            if key not in self._memory:
                model, target = self.explainer.cam_model(study_id, role, name)
                self._memory[key] = cams_for_labels(model, target, self.pixels(study_id, dicom_id), [label], how)[label]
                self.computed += 1
            found[label] = self._memory[key]
        return found
