"""A cohort table in the artifacts' column layout for unit tests: ids, a 2:1:1 split, cache rows."""

import numpy as np
import pandas as pd

from cxr_helpers.labels import CHEXPERT_LABELS
from cxr_helpers.prepare import COHORT_COLUMNS


def toy_cohort_frame(n: int) -> pd.DataFrame:
    """n rows with empty text columns, MIMIC-like ids and splits train/train/validate/test cycling."""
    cohort = pd.DataFrame({name: "" for name in COHORT_COLUMNS if name not in CHEXPERT_LABELS}, index=range(n))
    cohort["subject_id"] = 10000000 + np.arange(n)
    cohort["study_id"] = 50000000 + np.arange(n)
    cohort["dicom_id"] = [f"dicom-{i:04d}" for i in range(n)]
    cohort["split"] = np.array(["train", "train", "validate", "test"])[np.arange(n) % 4]
    cohort["cache_index"] = np.arange(n)
    return cohort
