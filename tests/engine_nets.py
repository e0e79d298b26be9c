"""Tiny models for the engine tests: fast on a shared 2-core CPU, with every layout the engine handles;
and the images a render starts from."""
import torch
from torch import nn

from pyviz_fast.engine.draws import Draws
from pyviz_fast.engine.init import initial_images
from pyviz_fast.engine.schedules import stages
from pyviz_fast.engine.units import parse_units


def starting_images(units, settings, seed, channels=3):
    """float [N, C, H, W]: the random init a render of ``units`` with ``settings`` and ``seed``
    starts from (at its first octave's size; the draws depend on seed and unit only)."""
    keys = [str(unit) for unit in parse_units(units)]
    hw = stages(settings.hw, settings.steps, settings.octaves, settings.octave_scale)[0][0]
    return initial_images(settings, Draws.for_units(keys, seed, settings.steps, settings.jitter), channels, hw)


class Explodes(nn.Module):
    """A layer that must never run: truncation tests put it after the target."""

    def forward(self, x):
        raise AssertionError("a layer after the deepest target was called")


def tiny_cnn(in_channels=3, classes=5, tail=None):
    """conv1 [8, H, W] -> conv2 [16, H, W] -> pool -> fc [classes]; ``tail`` replaces the head.

    No striding: a channel mean is then (nearly) shift invariant, so jittered ascent rises steadily.
    """
    torch.manual_seed(0)
    head = tail if tail is not None else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes))
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        head,
    ).eval()


class TokenNet(nn.Module):
    """A miniature vision transformer: patch embedding -> tokens [B, N, D] -> one block -> head."""

    def __init__(self, dim=12, patch=4, classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.block = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # [B, N, D]
        tokens = tokens + self.block(tokens)
        return self.head(tokens.mean(1))


class Viewer(nn.Module):
    """Calls .view on a conv activation, which channels_last strides reject; takes size x size images."""

    def __init__(self, size):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * size * size, 2)

    def forward(self, x):
        return self.fc(self.conv(x).view(x.shape[0], -1))
