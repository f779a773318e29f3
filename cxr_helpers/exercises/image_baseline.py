"""Notebook 02's exercise check: the paper's masked binary cross-entropy, written from its equation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cxr_helpers.exercises.feedback import NO_ANSWER, correct, not_quite, student_answer
from cxr_helpers.metrics import masked_bce


def _bce_cases(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(probabilities, coded targets) batches: a small one to reason about by hand, then random ones with every code."""
    generator = torch.Generator().manual_seed(seed)
    cases = [(torch.tensor([[0.9, 0.2, 0.7], [0.4, 0.6, 0.1]]), torch.tensor([[1.0, -2.0, 0.0], [-1.0, 1.0, -2.0]]))]
    for n in (5, 32):
        probabilities = torch.rand(n, 14, generator=generator).clamp(0.02, 0.98)
        codes = torch.tensor([1.0, 0.0, -1.0, -2.0])[torch.randint(4, (n, 14), generator=generator)]
        cases.append((probabilities, codes))
    return cases


def check_masked_bce(function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """The student's masked BCE against ``metrics.masked_bce`` (U-Zeros, blanks left out) on several batches."""
    for number, (probabilities, targets) in enumerate(_bce_cases()):
        got = student_answer("masked_bce_by_hand", lambda p=probabilities, t=targets: function(p.clone(), t.clone()))
        if got is NO_ANSWER:
            return False
        reference = float(masked_bce(torch.logit(probabilities.double()), targets.double()))
        value = float(got)
        if np.isclose(value, -reference, rtol=1e-4):
            return not_quite(f"batch {number}: your loss is negative.",
                             "log(p) is negative: binary cross-entropy is MINUS the mean of the logs (the paper's "
                             "Figure 3 drops that sign).")
        if not np.isclose(value, reference, rtol=1e-4):
            return not_quite(f"batch {number} ({tuple(targets.shape)} entries coded 1/0/-1/-2): your loss differs "
                             "from the workbook's.",
                             "leave out the -2 entries entirely: they count neither in the sum nor in the number you "
                             "divide by; -1 entries count as 0.")
    return correct("Your masked BCE matches the workbook's on every batch: the mask decides which entries count.")
