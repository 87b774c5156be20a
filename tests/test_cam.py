import torch

from camexp.cam import class_activation_maps, normalize_cams, upsample_cams
from camexp.models import build_network


def test_gap_cam_mean_plus_bias_equals_logit():
    torch.manual_seed(0)
    net = build_network("synthnet", num_classes=7, pool="avg", width=8).eval()
    images = torch.randn(5, 3, 64, 64)
    with torch.no_grad():
        features = net.forward_features(images)
        logits = net.forward_head(features)
        cams = class_activation_maps(features, net.classifier.weight)  # N x C x h x w
    assert cams.shape == (5, 7, 8, 8)
    recovered = cams.mean(dim=(2, 3)) + net.classifier.bias
    torch.testing.assert_close(recovered, logits, rtol=1e-5, atol=1e-5)


def test_cam_class_selection_forms_agree():
    torch.manual_seed(1)
    features, weights = torch.randn(4, 6, 5, 5), torch.randn(3, 6)
    every = class_activation_maps(features, weights)
    ids = torch.tensor([2, 0, 1, 2])
    one = class_activation_maps(features, weights, ids)
    torch.testing.assert_close(one, every[torch.arange(4), ids])
    pairs = torch.tensor([[0, 1], [2, 2], [1, 0], [0, 2]])
    two = class_activation_maps(features, weights, pairs)
    torch.testing.assert_close(two, every[torch.arange(4)[:, None], pairs])
    # by hand for one pixel: sum_k w_k^c f_k(x, y)
    assert torch.isclose(one[1, 3, 4], (weights[0] * features[1, :, 3, 4]).sum())


def test_normalize_maps_to_unit_range_and_constant_to_zero():
    cams = torch.stack([torch.arange(16.0).view(4, 4) - 3, torch.full((4, 4), 2.5), torch.full((4, 4), float("nan"))])
    out = normalize_cams(cams)
    assert out[0].min() == 0 and out[0].max() == 1
    assert torch.equal(out[1], torch.zeros(4, 4))
    assert torch.equal(out[2], torch.zeros(4, 4))


def test_upsample_to_input_size_keeps_batch_layout():
    cams = torch.rand(2, 3, 7, 7)
    up = upsample_cams(cams, 224)
    assert up.shape == (2, 3, 224, 224)
    # bilinear with align_corners=False preserves a constant map and the per-map ordering
    assert torch.allclose(upsample_cams(torch.full((1, 7, 7), 0.3), (20, 30)), torch.full((1, 20, 30), 0.3))
