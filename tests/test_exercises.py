"""Every "Your turn" check: accepts its solution, rejects the notebook's stub and plausible wrong answers,
never prints the expected answer, and works in a copy of the package without ``solutions.py``.

To add an exercise, add a row to ``EXERCISES`` (see ``cxr_helpers.exercises``). This module must not
import ``cxr_helpers.solutions`` at load: the no-solutions test imports it in a copy without one.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch

from cxr_helpers import exercises
from cxr_helpers.labels import CHEXPERT_LABELS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cxr_helpers"


@dataclass
class Exercise:
    """One check with its solution's name, the notebook's stub and wrong answers built from the solutions module."""

    check: str  # name in cxr_helpers.exercises
    solution: str  # name in cxr_helpers.solutions
    stub: Callable | type
    wrong: Callable[[ModuleType], list]  # solutions module -> plausible wrong answers
    arguments: Callable[[], tuple] = field(default=tuple)  # the check's extra arguments, if any


# ----------------------------------------------------------------------------- the notebooks' stubs
def stub_split(studies, fractions=(0.7, 0.2, 0.1), seed=0):
    return None


def stub_masked_bce(probabilities, targets):
    return None


def stub_top_words(tfidf_model, label, k=10):
    return None


def stub_concat_head(head, image_features, text_embedding):
    raise NotImplementedError


def stub_pointing(cam, mask, tolerance=0):
    return None


def stub_exact_shapley(value, n):
    return None


def stub_gradcam_from_hooks(model, layer, image, label):
    raise NotImplementedError


def stub_probability_shift(model, with_marker, without_marker, label):
    return None


class StubGatedFusionHead(torch.nn.Module):
    """The notebook's GatedFusionHead stub: the layers are there, gate() and forward() are TODOs."""

    def __init__(self, image_dim, text_dim, hidden=256, dropout=0.5):
        super().__init__()
        self.image_proj = torch.nn.Linear(image_dim, hidden)

    def gate(self, image_features, text_embedding):
        raise NotImplementedError

    def forward(self, image_features, text_embedding):
        raise NotImplementedError


# ----------------------------------------------------------------------------- plausible wrong answers
def wrong_splits(solutions: ModuleType) -> list:
    def by_study(studies, fractions=(0.7, 0.2, 0.1), seed=0):  # ignores the patients
        draw = np.random.default_rng(seed).random(len(studies))
        return np.where(draw < fractions[0], "train", np.where(draw < fractions[0] + fractions[1], "validate", "test"))

    def sorted_patients(studies, fractions=(0.7, 0.2, 0.1), seed=0):  # by patient, but never shuffled
        subjects = np.sort(studies["subject_id"].unique())
        place = pd.Series(np.arange(len(subjects)) / len(subjects), index=subjects)[studies["subject_id"]].to_numpy()
        return np.where(place < fractions[0], "train", np.where(place < fractions[0] + fractions[1], "validate", "test"))

    def fixed_fractions(studies, fractions=(0.7, 0.2, 0.1), seed=0):  # ignores the fractions asked for
        return solutions.split_by_patient(studies, (0.7, 0.2, 0.1), seed)

    return [by_study, sorted_patients, fixed_fractions]


def wrong_losses(solutions: ModuleType) -> list:
    def without_minus(probabilities, targets):  # the paper's Figure 3 as printed
        return -solutions.masked_bce_by_hand(probabilities, targets)

    def blanks_as_negative(probabilities, targets):
        return solutions.masked_bce_by_hand(probabilities, torch.where(targets == -2, 0.0, targets))

    def uncertain_as_positive(probabilities, targets):
        return solutions.masked_bce_by_hand(probabilities, torch.where(targets == -1, 1.0, targets))

    def mean_over_all_entries(probabilities, targets):  # blanks left out of the sum but not of the count
        mask = (targets != -2).float()
        return solutions.masked_bce_by_hand(probabilities, targets) * mask.sum() / mask.numel()

    return [without_minus, blanks_as_negative, uncertain_as_positive, mean_over_all_entries]


def wrong_top_words(solutions: ModuleType) -> list:
    def smallest_coefficients(model, label, k=10):
        coefficients = model.classifiers[CHEXPERT_LABELS.index(label)].coef_[0]
        return [str(w) for w in model.vectorizer.get_feature_names_out()[np.argsort(coefficients)[:k]]]

    return [lambda model, label, k=10: solutions.top_words(model, label, k)[::-1],
            lambda model, label, k=10: solutions.top_words(model, label, k + 1), smallest_coefficients]


def wrong_heads(solutions: ModuleType) -> list:
    def probabilities(head, image, text):
        return torch.sigmoid(solutions.concat_head_forward(head, image, text))

    def no_relu(head, image, text):
        return head[3](head[0](torch.cat([image, text], dim=1)))

    def text_first(head, image, text):
        fused = torch.cat([text, image], dim=1)
        return head[3](torch.relu(head[0](fused)))

    return [probabilities, no_relu, text_first]


def wrong_gated(solutions: ModuleType) -> list:
    class IgnoresGate(solutions.GatedFusionHead):
        def forward(self, image_features, text_embedding):
            return self.out(torch.tanh(self.image_proj(image_features)) + torch.tanh(self.text_proj(text_embedding)))

    class RawGate(solutions.GatedFusionHead):
        def gate(self, image_features, text_embedding):
            return self.gate_proj(torch.cat([image_features, text_embedding], dim=1))

    return [IgnoresGate, RawGate]


def wrong_pointing(solutions: ModuleType) -> list:
    return [lambda cam, mask, tolerance=0: solutions.pointing_game_with_tolerance(cam, mask, 0),
            lambda cam, mask, tolerance=0: solutions.pointing_game_with_tolerance(-cam, mask, tolerance)]


def wrong_shapley(solutions: ModuleType) -> list:
    def alone(value, n):  # each player's value on its own
        return np.array([value(frozenset({i})) - value(frozenset()) for i in range(n)])

    def leave_one_out(value, n):
        everyone = frozenset(range(n))
        return np.array([value(everyone) - value(everyone - {i}) for i in range(n)])

    def unweighted(value, n):  # every coalition counted alike
        import itertools

        phi = np.zeros(n)
        for i in range(n):
            others = [j for j in range(n) if j != i]
            coalitions = [frozenset(c) for size in range(n) for c in itertools.combinations(others, size)]
            phi[i] = np.mean([value(c | {i}) - value(c) for c in coalitions])
        return phi

    def equal_shares(value, n):  # fair (it adds up) but not Shapley
        return np.full(n, (value(frozenset(range(n))) - value(frozenset())) / n)

    return [alone, leave_one_out, unweighted, equal_shares]


def wrong_gradcams(solutions: ModuleType) -> list:
    import torch.nn.functional as F

    def not_upsampled(model, layer, image, label):
        cam = torch.from_numpy(solutions.gradcam_from_hooks(model, layer, image, label))
        return F.interpolate(cam[None, None], scale_factor=1 / 32, mode="bilinear")[0, 0].numpy()

    def gradients_reversed(model, layer, image, label):  # what the map of "-logit" would be
        class Negated(torch.nn.Module):
            def forward(self, x):
                return -model(x)

        return solutions.gradcam_from_hooks(Negated(), layer, image, label)

    def activations_only(model, layer, image, label):  # no gradient weights: the mean feature map
        caught = {}
        hook = layer.register_forward_hook(lambda module, inputs, output: caught.update(a=output))
        with torch.no_grad():
            model(image)
        hook.remove()
        cam = caught["a"].mean(dim=1)[0]
        cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-7)
        return F.interpolate(cam[None, None], size=image.shape[-2:], mode="bilinear")[0, 0].numpy()

    return [not_upsampled, gradients_reversed, activations_only]


def wrong_shifts(solutions: ModuleType) -> list:
    def reversed_shift(model, with_marker, without_marker, label):
        return -solutions.probability_shift(model, with_marker, without_marker, label)

    def logit_shift(model, with_marker, without_marker, label):
        batch = torch.from_numpy(np.stack([with_marker, without_marker]).astype(np.float32))[:, None]
        with torch.no_grad():
            logits = model(batch)[:, CHEXPERT_LABELS.index(label)]
        return float(logits[0] - logits[1])

    return [reversed_shift, logit_shift]


EXERCISES = [
    Exercise("check_split_by_patient", "split_by_patient", stub_split, wrong_splits),
    Exercise("check_masked_bce", "masked_bce_by_hand", stub_masked_bce, wrong_losses),
    Exercise("check_top_words", "top_words", stub_top_words, wrong_top_words),
    Exercise("check_concat_head", "concat_head_forward", stub_concat_head, wrong_heads),
    Exercise("check_gated_fusion", "GatedFusionHead", StubGatedFusionHead, wrong_gated),
    Exercise("check_pointing_game_with_tolerance", "pointing_game_with_tolerance", stub_pointing, wrong_pointing),
    Exercise("check_exact_shapley", "exact_shapley", stub_exact_shapley, wrong_shapley),
    Exercise("check_gradcam_from_hooks", "gradcam_from_hooks", stub_gradcam_from_hooks, wrong_gradcams),
    Exercise("check_probability_shift", "probability_shift", stub_probability_shift, wrong_shifts),
]


def quietly(check: Callable, *arguments) -> tuple[bool, str]:
    """A check's verdict and everything it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        verdict = check(*arguments)
    return verdict, printed.getvalue()


def verdicts(exercise: Exercise, solutions: ModuleType) -> dict[str, list[tuple[bool, str]]]:
    """The check's verdict and output on the solution, the stub and each wrong answer."""
    check = getattr(exercises, exercise.check)
    extra = exercise.arguments()
    return {"solution": [quietly(check, getattr(solutions, exercise.solution), *extra)],
            "stub": [quietly(check, exercise.stub, *extra)],
            "wrong": [quietly(check, answer, *extra) for answer in exercise.wrong(solutions)]}


def problems(solutions: ModuleType) -> list[str]:
    """What is wrong with any check (empty when every check accepts its solution and rejects the rest)."""
    found = []
    for exercise in EXERCISES:
        results = verdicts(exercise, solutions)
        if not all(verdict for verdict, _ in results["solution"]):
            found.append(f"{exercise.check} rejects the solution: {results['solution'][0][1]}")
        if results["stub"][0][0] or "Not done yet" not in results["stub"][0][1]:
            found.append(f"{exercise.check} does not say 'Not done yet' to the stub: {results['stub'][0][1]}")
        found += [f"{exercise.check} accepts wrong answer {n}: {out}" for n, (ok, out) in enumerate(results["wrong"]) if ok]
    return found


@pytest.fixture(scope="module")
def solutions() -> ModuleType:
    return importlib.import_module("cxr_helpers.solutions")


def test_every_check_accepts_its_solution_and_rejects_stubs_and_wrong_answers(solutions):
    assert problems(solutions) == []


def test_every_exported_check_is_in_the_registry():
    checks = {name for name in exercises.__all__ if name.startswith("check_")}
    assert checks == {exercise.check for exercise in EXERCISES}


def test_checks_leave_the_notebooks_random_state_and_modules_alone(solutions):
    from cxr_helpers.fusion.model import mlp_head

    head = mlp_head(512 + 8, 4, 0.5).train()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    assert quietly(exercises.check_concat_head, solutions.concat_head_forward, head)[0]
    assert quietly(exercises.check_gated_fusion, solutions.GatedFusionHead)[0]
    assert quietly(exercises.check_gradcam_from_hooks, solutions.gradcam_from_hooks)[0]
    assert torch.equal(torch.rand(3), expected) and head.training


def answer_texts(value) -> set[str]:
    """How an expected answer could appear in printed text."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (pd.Series, np.ndarray)):
        return set()
    if isinstance(value, (float, np.floating)):
        return {f"{value:.4f}", f"{value:.3f}", repr(float(value))}
    if isinstance(value, torch.Tensor):
        return {f"{value.flatten()[0].item():.4f}"}
    if isinstance(value, list) and value:
        return {repr(value), ", ".join(map(str, value)), repr(value[:3])}
    return set()


def test_no_failed_check_prints_the_expected_answer(solutions):
    for exercise in EXERCISES:
        solution = getattr(solutions, exercise.solution)
        if isinstance(solution, type):
            continue  # a class: its "answer" is behaviour, nothing a check could print
        expected = []

        def recording(*arguments, solution=solution, expected=expected, **keywords):
            expected.append(solution(*arguments, **keywords))
            return expected[-1]

        check = getattr(exercises, exercise.check)
        assert quietly(check, recording, *exercise.arguments())[0], exercise.check
        texts = set().union(*(answer_texts(value) for value in expected))
        for answer in exercise.wrong(solutions):
            verdict, printed = quietly(check, answer, *exercise.arguments())
            assert not verdict
            leaked = [text for text in texts if text in printed]
            assert not leaked, f"{exercise.check} printed the expected answer {leaked} in: {printed}"


def test_nothing_but_the_tests_imports_the_solutions():
    pattern = re.compile(r"^\s*(from\s+cxr_helpers(\.solutions|\s+import\s+.*\bsolutions\b)|import\s+cxr_helpers\.solutions)",
                         re.MULTILINE)
    sources = [*PACKAGE.rglob("*.py"), *(ROOT / "notebooks").glob("*.py")]
    importers = [path.relative_to(ROOT).as_posix() for path in sources
                 if path.name != "solutions.py" and pattern.search(path.read_text())]
    assert importers == []


NO_SOLUTIONS_SCRIPT = """
import importlib.util, sys
copy, tests, reference_path = sys.argv[1:4]
sys.path[:0] = [copy, tests]
# An editable install (pip install -e .) adds a finder that would fetch solutions.py from the checkout.
sys.meta_path[:] = [finder for finder in sys.meta_path if "Editable" not in getattr(finder, "__name__", "")]
assert importlib.util.find_spec("cxr_helpers.solutions") is None, "the copy still has solutions.py"
import cxr_helpers
assert cxr_helpers.__file__.startswith(copy), cxr_helpers.__file__
spec = importlib.util.spec_from_file_location("reference_solutions", reference_path)
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)  # the answers a student would write, from outside the package
import test_exercises
found = test_exercises.problems(reference)
print("PROBLEMS:", found)
sys.exit(1 if found else 0)
"""


def test_every_check_runs_in_a_copy_of_the_package_without_solutions(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "cxr_helpers", ignore=shutil.ignore_patterns("__pycache__", "solutions.py"))
    result = subprocess.run([sys.executable, "-c", NO_SOLUTIONS_SCRIPT, str(tmp_path), str(ROOT / "tests"),
                             str(PACKAGE / "solutions.py")], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
