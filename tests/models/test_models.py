"""The hand-written backbones against torchvision and timm, and each of their options."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from lightning_resnet.models import (
    ResNet,
    WeightsError,
    create_model,
    format_summary,
    list_models,
    load_pretrained,
    summarize,
)
from lightning_resnet.models.registry import resnet18, resnet50

ALL_NAMES = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
]


def same_outputs(ours: nn.Module, reference: nn.Module, size: int = 64, in_chans: int = 3) -> float:
    ours.eval()
    reference.eval()
    x = torch.randn(2, in_chans, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return (ours(x) - reference(x)).abs().max().item()


PAPER_CIFAR_PARAMETERS = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.7,
                          "resnet1202": 19.4}
"""The ResNet paper's Table 6: millions of parameters of its CIFAR-10 networks, as printed."""


def test_registry_lists_the_ten_torchvision_names_then_the_papers_cifar_networks():
    assert list_models() == ALL_NAMES + list(PAPER_CIFAR_PARAMETERS)


def test_unknown_name_is_an_error_listing_the_valid_names():
    with pytest.raises(ValueError, match="resnet99") as error:
        create_model("resnet99")
    assert all(name in str(error.value) for name in ALL_NAMES)


def test_unknown_option_is_a_clear_error():
    with pytest.raises(TypeError, match="bad option for backbone 'resnet18'.*colour"):
        create_model("resnet18", colour="blue")


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.slow
def test_matches_torchvision_keys_parameters_and_outputs(name):
    torch.manual_seed(0)
    with torch.device("meta"):  # torchvision's model built without initialising it: it gets our weights
        reference = getattr(torchvision.models, name)()
    ours = create_model(name)
    ours_shapes = {key: tuple(value.shape) for key, value in ours.state_dict().items()}
    reference_shapes = {key: tuple(value.shape) for key, value in reference.state_dict().items()}
    assert ours_shapes == reference_shapes
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    reference = reference.to_empty(device="cpu")
    reference.load_state_dict(ours.state_dict(), strict=True)
    assert same_outputs(ours, reference) < 1e-4


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d"])
def test_timm_weights_load_strictly_and_match(name):
    reference = timm.create_model(name, pretrained=False)
    ours = create_model(name)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert same_outputs(ours, reference) < 1e-4


def test_timm_resnet50d_is_the_deep_stem_with_avg_down():
    reference = timm.create_model("resnet50d", pretrained=False)
    ours = resnet50(stem="deep", avg_down=True)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert same_outputs(ours, reference) < 1e-4


@pytest.mark.parametrize(
    "stem, size, expected",
    [
        ("imagenet", 224, [56, 28, 14, 7]),
        ("imagenet", 32, [8, 4, 2, 1]),
        ("cifar", 32, [32, 16, 8, 4]),
        ("cifar", 224, [224, 112, 56, 28]),
        ("deep", 224, [56, 28, 14, 7]),
        ("deep", 32, [8, 4, 2, 1]),
    ],
)
@pytest.mark.slow
def test_stem_stage_sizes(stem, size, expected):
    model = resnet18(num_classes=10, stem=stem).eval()
    with torch.no_grad():
        maps = model.forward_stages(torch.randn(1, 3, size, size))
        logits = model(torch.randn(1, 3, size, size))
    assert [m.shape[-1] for m in maps] == expected
    assert [m.shape[1] for m in maps] == [64, 128, 256, 512]
    assert logits.shape == (1, 10)


def test_cifar_stem_is_a_3x3_stride_1_conv_without_max_pool():
    model = resnet18(stem="cifar")
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)


def test_v1_and_v1_5_differ_only_in_stride_placement():
    v15 = resnet50()
    v1 = resnet50(stride_in_1x1=True)
    assert {k: v.shape for k, v in v1.state_dict().items()} == {k: v.shape for k, v in v15.state_dict().items()}
    for stage in ("layer2", "layer3", "layer4"):
        first_v1, first_v15 = getattr(v1, stage)[0], getattr(v15, stage)[0]
        assert first_v1.conv1.stride == (2, 2) and first_v1.conv2.stride == (1, 1)
        assert first_v15.conv1.stride == (1, 1) and first_v15.conv2.stride == (2, 2)
    differing = [
        name
        for (name, a), (_, b) in zip(v1.named_modules(), v15.named_modules())
        if isinstance(a, nn.Conv2d) and a.stride != b.stride
    ]
    assert differing == [f"{s}.0.{c}" for s in ("layer2", "layer3", "layer4") for c in ("conv1", "conv2")]
    v1.load_state_dict(v15.state_dict())
    assert same_outputs(v1, v15) > 1e-3  # same weights, different computation


def test_single_channel_input():
    model = resnet18(num_classes=3, in_chans=1).eval()
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 3)


def test_avg_down_shortcut_pools_then_projects():
    model = resnet50(avg_down=True)
    shortcut = model.layer2[0].downsample
    assert isinstance(shortcut[0], nn.AvgPool2d) and shortcut[1].stride == (1, 1)
    assert isinstance(model.layer1[0].downsample[0], nn.Identity)
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_zero_init_residual_zeroes_the_last_norm_of_every_block():
    for model, last in ((resnet18(zero_init_residual=True), "bn2"), (resnet50(zero_init_residual=True), "bn3")):
        blocks = [block for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for block in stage]
        assert all(torch.count_nonzero(getattr(block, last).weight) == 0 for block in blocks)
    assert torch.count_nonzero(resnet18().layer1[0].bn2.weight) > 0


def test_dilation_matches_torchvision_and_keeps_resolution():
    reference = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True])
    ours = resnet50(replace_stride_with_dilation=[False, True, True])
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert same_outputs(ours, reference) < 1e-4
    with torch.no_grad():
        maps = ours.eval().forward_stages(torch.randn(1, 3, 224, 224))
    assert [m.shape[-1] for m in maps] == [56, 28, 28, 28]


def test_drop_rate_is_dropout_before_the_classifier():
    model = resnet18(num_classes=5, drop_rate=0.5)
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.5
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        features = model.forward_features(x)
        model.train()
        torch.manual_seed(1)
        first = model.forward_head(features)
        second = model.forward_head(features)
    assert not torch.equal(first, second)


def test_drop_path_rises_linearly_and_is_off_in_eval():
    model = resnet50(drop_path_rate=0.2)
    blocks = [block for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for block in stage]
    assert isinstance(blocks[0].drop_path, nn.Identity)
    rates = [block.drop_path.p for block in blocks[1:]]
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.2)
    plain = resnet50()
    plain.load_state_dict(model.state_dict(), strict=True)
    assert same_outputs(model, plain) == 0.0
    model.train()
    x = torch.randn(8, 3, 32, 32)
    torch.manual_seed(0)
    with torch.no_grad():
        assert not torch.equal(model.forward_stages(x)[-1], plain.train().forward_stages(x)[-1])


def test_features_only_returns_the_four_stage_maps_without_a_classifier():
    model = resnet50(features_only=True).eval()
    assert not any(key.startswith("fc.") for key in model.state_dict())
    with torch.no_grad():
        maps = model(torch.randn(2, 3, 224, 224))
    assert [tuple(m.shape[1:]) for m in maps] == [(256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)]
    assert model.stage_channels == [256, 512, 1024, 2048]


@pytest.mark.parametrize("stem", ["imagenet", "cifar", "deep"])
def test_quarter_channels_give_narrow_stages_and_a_sixteenth_of_the_macs(stem):
    narrow = resnet50(stem=stem, channels=(16, 32, 64, 128), features_only=True).eval()
    with torch.no_grad():
        maps = narrow(torch.randn(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == narrow.stage_channels == [64, 128, 256, 512]
    full_macs = sum(row.macs for row in summarize(resnet50(stem=stem), image_size=64)[:-1])
    narrow_macs = sum(row.macs for row in summarize(narrow, image_size=64))
    assert 1 / 20 < narrow_macs / full_macs < 1 / 12


def test_channels_other_than_four_positive_widths_are_refused():
    with pytest.raises(ValueError, match=r"channels must give 4 positive widths.*\[16, 0, 64, 128\]"):
        resnet18(channels=(16, 0, 64, 128))


@pytest.mark.parametrize("factory, width", [(resnet18, 512), (resnet50, 2048)])
def test_forward_features_is_the_pooled_vector_the_classifier_reads(factory, width):
    model = factory(num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, width) and model.num_features == width
        assert torch.allclose(model.fc(features), model(x))


def test_frozen_backbone_gets_no_gradient_and_keeps_its_statistics():
    model = resnet18(num_classes=4)
    model.freeze_backbone()
    model.train()
    running_mean = model.bn1.running_mean.clone()
    loss = model(torch.randn(4, 3, 32, 32) * 3 + 1).sum()
    loss.backward()
    assert all(p.grad is None for p in model.backbone_parameters())
    assert model.fc.weight.grad is not None
    assert torch.equal(model.bn1.running_mean, running_mean)
    assert not model.layer1[0].bn1.training and model.training

    model.unfreeze_backbone()
    model.zero_grad()
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.backbone_parameters())
    assert model.layer1[0].bn1.training


def test_summary_reads_the_published_figures():
    rows = summarize(resnet50(), image_size=224)
    assert [row.name for row in rows] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert [row.output_shape for row in rows] == [(64, 56, 56), (256, 56, 56), (512, 28, 28),
                                                  (1024, 14, 14), (2048, 7, 7), (1000,)]
    assert sum(row.trainable_params for row in rows) == 25_557_032
    text = format_summary(rows)
    assert "25.56 M parameters, 4.09 GMACs" in text


@pytest.mark.parametrize("name, published", [("resnet18", 1.81), ("resnet50", 4.09), ("resnext50_32x4d", 4.23)])
def test_gmacs_within_one_percent_of_torchvision(name, published):
    macs = sum(row.macs for row in summarize(create_model(name), image_size=224)) / 1e9
    assert abs(macs - published) / published < 0.01


def test_summary_counts_frozen_parameters_apart():
    model = resnet18(num_classes=4)
    model.freeze_backbone()
    rows = summarize(model, image_size=32)
    head = rows[-1]
    assert head.trainable_params == 512 * 4 + 4 and head.frozen_params == 0
    assert sum(row.trainable_params for row in rows[:-1]) == 0
    assert sum(row.frozen_params for row in rows) == sum(p.numel() for p in model.backbone_parameters())


# ----- loading weights ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torchvision_resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".safetensors", ".ckpt"])
def test_load_pretrained_reads_each_format(tmp_path, torchvision_resnet18, suffix):
    state = torchvision_resnet18.state_dict()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif suffix == ".ckpt":
        torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in state.items()}}, path)
    else:
        torch.save(state, path)
    model = resnet18()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = load_pretrained(model, path)
    assert report == {"missing": [], "unexpected": [], "skipped_head": []}
    assert same_outputs(model, torchvision_resnet18) < 1e-5


def test_another_head_size_keeps_the_new_head(tmp_path, torchvision_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_resnet18.state_dict(), path)
    model = resnet18(num_classes=4)
    new_head = model.fc.weight.detach().clone()
    with pytest.warns(UserWarning, match="1000 classes, the model 4: loaded the backbone and kept the model's new"):
        report = load_pretrained(model, path)
    assert report["skipped_head"] == ["fc.weight", "fc.bias"]
    assert torch.equal(model.fc.weight, new_head)
    assert torch.equal(model.layer4[1].conv2.weight, torchvision_resnet18.layer4[1].conv2.weight)


def test_wrong_architecture_names_the_first_mismatched_key(tmp_path, torchvision_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_resnet18.state_dict(), path)
    with pytest.raises(ValueError, match=r"'layer1.0.conv1.weight' has shape \(64, 64, 3, 3\) in the file "
                                         r"and \(64, 64, 1, 1\) in the model"):
        load_pretrained(resnet50(), path)


def test_a_narrow_network_refuses_the_default_widths_weights(torchvision_resnet18):
    with pytest.raises(ValueError, match=r"resnet18 is not this architecture: 'conv1.weight' has shape "
                                         r"\(64, 3, 7, 7\) in the file and \(32, 3, 7, 7\) in the model"):
        load_pretrained(resnet18(channels=(32, 64, 128, 256)), torchvision_resnet18.state_dict(), "resnet18")


def test_weights_that_fit_only_part_of_the_model_are_refused_unless_partial(tmp_path, torchvision_resnet18):
    state = dict(torchvision_resnet18.state_dict())
    del state["layer4.1.bn2.running_var"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    model = resnet18()
    untouched = model.conv1.weight.detach().clone()
    with pytest.raises(WeightsError, match=r"1 of the model's tensors are not in it \['layer4.1.bn2.running_var'\]"):
        load_pretrained(model, path)
    assert torch.equal(model.conv1.weight, untouched)  # refused before anything was loaded
    with pytest.warns(UserWarning, match=r"1 missing keys \['layer4.1.bn2.running_var'\], 1 unexpected keys"):
        report = load_pretrained(model, path, partial=True)
    assert report["missing"] == ["layer4.1.bn2.running_var"]
    assert report["unexpected"] == ["extra.weight"]


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(ValueError, match="refusing to load .*evil.pth.*weights_only=True"):
        load_pretrained(resnet18(), path)
    assert not marker.exists()


def test_missing_weights_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_pretrained(resnet18(), tmp_path / "nowhere.pth")


def test_resnet_is_a_plain_module():
    assert isinstance(resnet18(), ResNet)
    assert not any(type(m).__module__.startswith(("torchvision.models", "timm")) for m in resnet50().modules())


@pytest.mark.parametrize("name, published", PAPER_CIFAR_PARAMETERS.items())
def test_the_papers_cifar_networks_have_its_parameter_counts_and_depths(name, published):
    model = create_model(name)
    count = sum(p.numel() for p in model.parameters())
    digits = len(str(published).split(".")[1])
    assert round(count / 1e6, digits) == published  # ResNet-110: 1,727,962, printed 1.7 (1.6 % more)
    assert name == "resnet110" or abs(count / 1e6 - published) / published < 0.01
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == int(name.removeprefix("resnet"))  # 6n + 2: the stem, 6n convolutions, the classifier


def test_zero_padding_shortcuts_subsample_and_add_zero_channels_without_parameters():
    model = create_model("resnet20", num_classes=4).eval()
    shortcut = model.layer2[0].downsample
    assert sum(p.numel() for p in shortcut.parameters()) == 0
    x = torch.randn(2, 16, 32, 32)
    out = shortcut(x)
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2]) and not out[:, 16:].any()
    with torch.no_grad():
        maps = model.forward_stages(torch.randn(3, 3, 32, 32))
        logits = model(torch.randn(3, 3, 32, 32))
    assert [tuple(m.shape[1:]) for m in maps] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)] and logits.shape == (3, 4)
    rows = summarize(model, image_size=32)
    assert [row.name for row in rows] == ["stem", "layer1", "layer2", "layer3", "head"]
    assert "0.27 M parameters" in format_summary(rows)
    projecting = create_model("resnet20", num_classes=4, shortcut="projection")
    added = sum(p.numel() for p in projecting.parameters()) - sum(p.numel() for p in model.parameters())
    assert added == 16 * 32 + 32 * 64 + 2 * (32 + 64)  # option B: two 1x1 convs and their BatchNorms
    with pytest.raises(TypeError, match="shortcut 'zero_pad' takes BasicBlock networks without avg_down"):
        create_model("resnet56", avg_down=True)
    with pytest.raises(TypeError, match="unknown shortcut 'B': expected 'zero_pad' .the paper's option A. or 'proj"):
        create_model("resnet56", shortcut="B")
    with pytest.raises(TypeError, match="'shortcutt'; the options: in_chans, stem, channels, .*shortcut, avg_down"):
        create_model("resnet56", shortcutt="A")


@pytest.mark.parametrize("shortcut", ["zero_pad", "projection"])
@pytest.mark.slow
def test_the_papers_cifar_network_learns_a_batch(shortcut):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=4, shortcut=shortcut)
    images = torch.randn(32, 3, 32, 32)
    images[:, 0] += torch.arange(32).remainder(4).view(-1, 1, 1) - 1.5  # the class shifts the red channel
    targets = torch.arange(32).remainder(4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(12):
        loss = nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
