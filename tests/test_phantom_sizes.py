"""The small findings are large enough to see at the models' 128 px: at least 5 px across (a mass 9)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from cxr_helpers.phantom.anatomy import sample_anatomy
from cxr_helpers.phantom.findings import FindingSpec, rib_break
from cxr_helpers.phantom.render import render

MODEL_SIZE = 128
FLOOR_PX = {"Lung Lesion": 9, "Atelectasis": 5, "Pleural Other": 5, "Fracture": 5}  # a lesion is a 3 cm+ mass


def _across(mask: np.ndarray) -> float:
    """The width of the mask's thickest part: twice the largest distance from inside to outside."""
    return 2.0 * float(distance_transform_edt(np.pad(mask, 1)).max())


@pytest.mark.parametrize("label", sorted(FLOOR_PX))
def test_mild_small_findings_are_wide_enough_at_128_px(label):
    widths = []
    for seed in range(8):  # mild, on PA and AP views (AP magnifies: PA is the harder case)
        anatomy = sample_anatomy(np.random.default_rng(seed), ("PA", "AP")[seed % 2], MODEL_SIZE, MODEL_SIZE)
        zone = ("upper", "middle", "lower")[seed % 3]
        _, masks = render(anatomy, [FindingSpec(label, 1.0, 0, ("right", "left")[seed % 2], zone, seed=seed)])
        widths.append(_across(masks[label]))
    assert min(widths) >= FLOOR_PX[label], (label, widths)


def test_a_clear_fracture_displaces_the_rib_by_at_least_its_width():
    for seed in range(20):
        anatomy = sample_anatomy(np.random.default_rng(seed), "PA", MODEL_SIZE, MODEL_SIZE)
        step = rib_break(FindingSpec("Fracture", 1.0, 0, "left", seed=seed), anatomy).step
        assert abs(step) >= 2 * anatomy.rib_thickness


def test_severity_makes_a_lesion_larger():
    anatomy = sample_anatomy(np.random.default_rng(0), "PA", MODEL_SIZE, MODEL_SIZE)
    areas = [render(anatomy, [FindingSpec("Lung Lesion", 1.0, severity, "right", "middle", seed=4)])[1]["Lung Lesion"].sum()
             for severity in (0, 1, 2)]
    assert areas[0] < areas[1] < areas[2]
