"""Where the phantom's files go and how they are encoded: MIMIC paths, JPEG, masks, gzipped CSVs."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

JPG_DIR, REPORTS_DIR, TRUTH_DIR = "mimic-cxr-jpg", "mimic-cxr-reports", "ground_truth"
CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert.csv.gz"
METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv.gz"
JPEG_QUALITY = 90


def encode_jpeg(image: np.ndarray) -> bytes:
    """A greyscale uint8 array as baseline JPEG bytes (the phantom's one encoding path)."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes back to a uint8 array."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("L"))


def as_stored(image: np.ndarray) -> np.ndarray:
    """The pixels a reader gets back once ``image`` is stored as the phantom's JPEG (lossy)."""
    return decode_jpeg(encode_jpeg(image))


def save_masks(masks: dict[str, np.ndarray], path: Path) -> None:
    """One boolean array per key in a compressed .npz (its folder must exist)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{label: mask.astype(bool) for label, mask in sorted(masks.items())})
    path.write_bytes(buffer.getvalue())


def write_csv_gz(frame: pd.DataFrame, path: Path) -> None:
    """Gzipped CSV with a fixed header timestamp, so identical content gives identical bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(index=False, lineterminator="\n")
    path.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0))


def image_path(root: Path, subject_id: int, study_id: int, dicom_id: str) -> Path:
    """Where MIMIC-CXR-JPG keeps one image: files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg."""
    return Path(root) / JPG_DIR / "files" / subject_folder(subject_id) / f"s{study_id}" / f"{dicom_id}.jpg"


def report_path(root: Path, subject_id: int, study_id: int) -> Path:
    """Where MIMIC-CXR keeps one report: files/pXX/pSUBJECT/sSTUDY.txt."""
    return Path(root) / REPORTS_DIR / "files" / subject_folder(subject_id) / f"s{study_id}.txt"


def subject_folder(subject_id: int) -> str:
    """MIMIC's subject folder: pXX/pSUBJECT (XX = the first two digits of the subject id)."""
    return f"p{str(subject_id)[:2]}/p{subject_id}"
