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


def test_normalize_equals_the_straightforward_where_and_nan_to_num():
    """normalize_cams skips the nan_to_num pass (a finite span > 0 leaves nothing to clean) and zeroes
    other maps directly; bit for bit (signed zeros included) the plain version, special values too."""

    def plain(cams):
        flat = cams.flatten(-2)
        low, high = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
        span = high - low
        out = torch.where(span > 0, (flat - low) / span.clamp_min(torch.finfo(cams.dtype).tiny), 0.0)
        return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).view_as(cams)

    gen = torch.Generator().manual_seed(0)
    specials = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 3e38, -3e38, 1e-45])
    for trial in range(200):
        cams = torch.randn(6, 3, 5, 7, generator=gen) * 10.0 ** int(torch.randint(-40, 39, (1,), generator=gen))
        hit = torch.rand(cams.shape, generator=gen) < 0.03
        cams[hit] = specials[torch.randint(0, len(specials), (int(hit.sum()),), generator=gen)]
        cams[0, 0], cams[1, 1], cams[2, 2, 0, 0] = 2.0, -0.0, 1e-45  # constant maps, a subnormal span
        for maps in (cams, cams[0], cams.double()):
            out, want = normalize_cams(maps), plain(maps)
            assert torch.equal(out, want) and torch.equal(out.signbit(), want.signbit()), trial


def test_upsample_to_input_size_keeps_batch_layout():
    cams = torch.rand(2, 3, 7, 7)
    up = upsample_cams(cams, 224)
    assert up.shape == (2, 3, 224, 224)
    # bilinear with align_corners=False preserves a constant map and the per-map ordering
    assert torch.allclose(upsample_cams(torch.full((1, 7, 7), 0.3), (20, 30)), torch.full((1, 20, 30), 0.3))
