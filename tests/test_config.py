"""Settings: profile defaults, environment variables, validation; labels and policies."""

import numpy as np
import pytest
import torch

from cxr_helpers import config
from cxr_helpers.config import load_settings
from cxr_helpers.labels import CHEXPERT_LABELS, binary_targets, label_index


def test_mimic_profile_has_the_papers_defaults(monkeypatch):
    for var in config.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    s = config.load_settings(profile="mimic", fast=False)
    assert (s.image_size, s.lr, s.batch_size, s.epochs, s.dropout) == (224, 1e-5, 32, 10, 0.5)
    assert (s.n_studies, s.split_fractions, s.freeze_through) == (10_850, (0.7, 0.2, 0.1), "layer2")
    assert s.text_model == "microsoft/BiomedVLP-CXR-BERT-general" and s.image_weights == "imagenet"
    assert s.uncertainty_policy == "zeros" and s.top_k_labels == 3
    assert s.lr_schedule == "constant"  # the paper's rate; only the text fine-tune warms up and decays


def test_fast_shrinks_and_env_overrides(monkeypatch):
    monkeypatch.setenv("CXR_EPOCHS", "5")
    monkeypatch.setenv("CXR_ARTIFACTS_DIR", "/tmp/somewhere")
    monkeypatch.setenv("CXR_IMAGE_WEIGHTS", "none")
    s = config.load_settings(profile="phantom", fast=True)
    assert s.image_size == config.FAST_OVERRIDES["image_size"] < config.PHANTOM_DEFAULTS["image_size"]
    assert s.epochs == 5 and str(s.artifacts_dir) == "/tmp/somewhere" and s.image_weights is None
    assert s.metrics_dir == s.artifacts_dir / "metrics"


def test_relative_paths_resolve_from_the_workbook_root(monkeypatch):
    monkeypatch.delenv("CXR_ARTIFACTS_DIR", raising=False)
    s = config.load_settings(profile="phantom", fast=False)
    assert s.artifacts_dir == config.workbook_root() / "artifacts" / "phantom"


@pytest.mark.parametrize(
    "bad", [dict(profile="xray"), dict(views="side"), dict(uncertainty_policy="maybe"), dict(text_setting="all"),
            dict(lr_schedule="cosine"), dict(text_finetune_schedule="step"), dict(text_finetune_head="cnn")]
)
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        config.load_settings(**bad)


def test_describe_lists_every_field():
    text = config.load_settings().describe()
    assert "uncertainty_policy" in text and "image_size" in text and text.count("\n") >= 20


def test_label_names_and_order():
    assert len(CHEXPERT_LABELS) == 14
    assert CHEXPERT_LABELS[0] == "Atelectasis" and CHEXPERT_LABELS[8] == "No Finding"
    assert label_index("Support Devices") == 13
    with pytest.raises(KeyError):
        label_index("Pneumonitis")


def test_uncertainty_policies():
    codes = np.array([[1, 0, -1, -2]])
    zeros, mask = binary_targets(codes, "zeros")
    assert zeros.tolist() == [[1, 0, 0, 0]] and mask.tolist() == [[True, True, True, False]]
    ones, _ = binary_targets(codes, "ones")
    assert ones.tolist() == [[1, 0, 1, 0]]
    _, mask = binary_targets(codes, "ignore")
    assert mask.tolist() == [[True, True, False, False]]
    with pytest.raises(ValueError):
        binary_targets(codes, "half")


def test_blank_policies_decide_whether_not_mentioned_counts_as_absent():
    codes = np.full((2, 14), -2)
    codes[0, label_index("Cardiomegaly")] = 1
    codes[1, label_index("No Finding")] = 1
    binary, mask = binary_targets(codes, "zeros", "ignore")  # the paper: only mentioned labels count
    assert mask.sum() == 2 and binary[mask].tolist() == [1, 1]
    binary, mask = binary_targets(codes, "zeros", "negative")  # every blank is a negative
    assert mask.all() and binary.sum() == 2
    binary, mask = binary_targets(codes, "zeros", "no_finding_negative")  # only No Finding's blanks
    no_finding = label_index("No Finding")
    assert mask[:, no_finding].all() and binary[:, no_finding].tolist() == [0, 1] and mask.sum() == 3
    tensor_binary, tensor_mask = binary_targets(torch.tensor(codes, dtype=torch.float64), "zeros", "negative")
    assert tensor_binary.dtype == torch.float64 and tensor_mask.all()  # one implementation for tensors and arrays
    with pytest.raises(ValueError, match="blank_policy"):
        binary_targets(codes, "zeros", "maybe")
    with pytest.raises(ValueError, match="blank_policy"):
        load_settings(blank_policy="maybe")


def test_phantom_trains_on_blank_as_negative_and_mimic_keeps_the_paper():
    assert load_settings(profile="phantom").blank_policy == "negative"
    assert load_settings(profile="mimic").blank_policy == "ignore"


def test_pick_device_is_a_real_device():
    device = config.pick_device()
    assert device.type in {"cpu", "cuda", "mps"}
    assert config.pick_device("cpu").type == "cpu"
