"""The image model: shapes, 1-channel conv1, freezing (BatchNorm included), pretrained weights."""

import urllib.error

import pytest
import torch
from torchvision.models import resnet18

from cxr_helpers import image_model
from cxr_helpers.config import load_settings
from cxr_helpers.image_model import ImageClassifier, build_image_model


@pytest.fixture
def images():
    return torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))


def test_shapes_and_the_grayscale_conv1(images):
    model = ImageClassifier().eval()
    assert model.input_keys == ("image",)
    assert model(image=images).shape == (2, 14)
    assert model.features(images).shape == (2, 512)
    conv1 = model.backbone.conv1
    assert conv1.weight.shape == (64, 1, 7, 7) and conv1.bias is None
    assert conv1.stride == (2, 2) and conv1.padding == (3, 3)
    dropout, linear = model.backbone.fc
    assert isinstance(dropout, torch.nn.Dropout) and dropout.p == 0.5 and linear.out_features == 14


@pytest.mark.parametrize(
    ("freeze_through", "frozen"),
    [
        ("none", set()),
        ("layer1", {"conv1", "bn1", "layer1"}),
        ("layer2", {"conv1", "bn1", "layer1", "layer2"}),
        ("layer3", {"conv1", "bn1", "layer1", "layer2", "layer3"}),
    ],
)
def test_freeze_through_freezes_exactly_the_early_stages(freeze_through, frozen):
    model = ImageClassifier(freeze_through=freeze_through)
    for name, module in model.backbone.named_children():
        flags = {p.requires_grad for p in module.parameters()}
        if flags:
            assert flags == {name not in frozen}, name
    counts = image_model.parameter_counts(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert (counts["frozen"] == 0) == (freeze_through == "none")


def test_frozen_batchnorm_keeps_its_statistics_in_train_mode(images):
    model = ImageClassifier(freeze_through="layer2").train()
    layer2_bn = model.backbone.layer2[0].bn1
    layer3_bn = model.backbone.layer3[0].bn1
    before2, before3 = layer2_bn.running_mean.clone(), layer3_bn.running_mean.clone()
    assert not layer2_bn.training and layer3_bn.training and model.backbone.fc.training
    model(image=images)
    torch.testing.assert_close(layer2_bn.running_mean, before2)
    assert not torch.equal(layer3_bn.running_mean, before3)


def test_no_gradient_reaches_frozen_layers(images):
    model = ImageClassifier(freeze_through="layer2").train()
    model(image=images).sum().backward()
    assert model.backbone.layer2[1].conv2.weight.grad is None
    assert model.backbone.conv1.weight.grad is None
    assert model.backbone.layer3[0].conv1.weight.grad is not None


def test_random_layers_are_never_frozen_pretrained_ones_are(tmp_path):
    settings = load_settings(profile="mimic", image_weights=None, freeze_through="layer2")
    assert image_model.parameter_counts(build_image_model(settings))["frozen"] == 0  # nothing to keep in random weights
    weights = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), weights)
    frozen = build_image_model(load_settings(profile="mimic", image_weights=str(weights), freeze_through="layer2"))
    assert not any(p.requires_grad for p in frozen.backbone.layer2.parameters())


def test_cam_layer_is_named_the_same_way_on_every_model():
    model = ImageClassifier()
    assert model.cam_layer() is model.backbone.layer4 and model.cam_layer("layer2") is model.backbone.layer2
    with pytest.raises(ValueError, match="Grad-CAM layer"):
        model.cam_layer("layer1")


def test_unknown_freeze_choice_is_refused():
    with pytest.raises(ValueError, match="freeze_through"):
        ImageClassifier(freeze_through="layer4")


@pytest.fixture
def fake_pretrained(tmp_path):
    """A randomly initialised torchvision ResNet-18 (3-channel, 1000 classes) saved as a local .pth."""
    torch.manual_seed(123)
    reference = resnet18(weights=None)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode really uses them
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    return reference.eval(), path


def test_rgb_sum_conv1_gives_the_same_features_as_rgb_copies_of_the_image(fake_pretrained, images):
    reference, path = fake_pretrained
    settings = load_settings(profile="mimic", image_weights=str(path), conv1_init="rgb_sum")
    model = build_image_model(settings).eval()
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        expected = reference(images.repeat(1, 3, 1, 1))  # the gray image copied into R, G and B
        torch.testing.assert_close(model.features(images), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_random_conv1_keeps_the_paper_s_fresh_kernel_but_loads_the_rest(fake_pretrained):
    reference, path = fake_pretrained
    settings = load_settings(profile="mimic", image_weights=str(path), conv1_init="random")
    model = build_image_model(settings)
    summed = reference.conv1.weight.sum(dim=1, keepdim=True)
    assert not torch.allclose(model.backbone.conv1.weight, summed)
    torch.testing.assert_close(model.backbone.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    torch.testing.assert_close(model.backbone.bn1.running_var, reference.bn1.running_var)


def test_weights_argument_overrides_settings_and_none_means_random(fake_pretrained):
    _, path = fake_pretrained
    settings = load_settings(profile="mimic", image_weights=str(path))
    torch.manual_seed(0)
    plain = build_image_model(settings, weights="none")
    torch.manual_seed(0)
    assert torch.equal(plain.backbone.layer1[0].conv1.weight, ImageClassifier().backbone.layer1[0].conv1.weight)


def test_bad_weight_files_get_clear_errors(tmp_path):
    settings = load_settings(profile="mimic")
    with pytest.raises(FileNotFoundError, match="CXR_IMAGE_WEIGHTS"):
        build_image_model(settings, weights=str(tmp_path / "missing.pth"))
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision ResNet-18"):
        build_image_model(settings, weights=str(tmp_path / "other.pth"))


def test_offline_imagenet_download_says_how_to_proceed(monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="CXR_IMAGE_WEIGHTS=none"):
        build_image_model(load_settings(profile="mimic"), weights="imagenet")
