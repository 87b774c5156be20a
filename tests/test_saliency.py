import torch
import torch.nn as nn

from camexp.cam import gradient_saliency


def test_linear_network_saliency_is_abs_weight_max_over_channels():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 6))
    images = torch.randn(2, 3, 4, 5)
    classes = torch.tensor([4, 1])
    maps = gradient_saliency(net, images, classes)
    # d (W x + b)_c / d x = W_c, independent of x
    expected = net[1].weight[classes].view(2, 3, 4, 5).abs().amax(1)
    torch.testing.assert_close(maps, expected)


def test_saliency_matches_per_image_autograd_for_a_conv_net():
    torch.manual_seed(1)
    layers = [nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)]
    net = nn.Sequential(*layers)
    images = torch.randn(3, 3, 8, 8)
    classes = torch.tensor([0, 2, 1])
    maps = gradient_saliency(net, images, classes)
    for i in range(3):
        x = images[i : i + 1].clone().requires_grad_(True)
        net(x)[0, classes[i]].backward()
        torch.testing.assert_close(maps[i], x.grad[0].abs().amax(0))


def test_works_under_no_grad_context():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with torch.no_grad():
        maps = gradient_saliency(net, torch.randn(1, 3, 2, 2), torch.tensor([1]))
    assert maps.shape == (1, 2, 2) and maps.abs().sum() > 0
