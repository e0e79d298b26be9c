"""ShapesNet: a small fully-convolutional CNN for the procedural shapes classes.

Takes RGB images in [0, 1] of any size >= 32 px (the input normalization is part of the
model) and returns class logits. It is an ``nn.Sequential`` so that every layer worth
visualizing is a named top-level child, in execution order:

==========  ==============================================  ===========================
name        what                                            output for a 64 px input
==========  ==============================================  ===========================
normalize   (x - 0.5) / 0.25, fixed                         [B, 3, 64, 64]
conv1       conv3x3(3->16) BN ReLU                          [B, 16, 64, 64]
conv2       maxpool2 conv3x3(16->32) BN ReLU                [B, 32, 32, 32]
conv3       maxpool2 conv3x3(32->64) BN ReLU, x2            [B, 64, 16, 16]
conv4       maxpool2 conv3x3(64->96) BN ReLU, x2            [B, 96, 8, 8]
pool        global average pooling                          [B, 96, 1, 1]
flatten                                                     [B, 96]
fc          linear 96->10: class logits (pre-softmax)       [B, 10]
==========  ==============================================  ===========================

Each ``convN`` block's output is post-ReLU; its pre-ReLU activation is ``convN.bn`` (or
``convN.bn2`` for the two-conv blocks), which is what feature visualizations of a channel
usually target when a post-ReLU channel is dead on noise.

Example::

    >>> import torch
    >>> from pyviz_fast.zoo.shapesnet import ShapesNet
    >>> ShapesNet()(torch.rand(2, 3, 48, 48)).shape
    torch.Size([2, 10])
"""
from collections import OrderedDict

from torch import nn

MIN_INPUT_SIZE = 32


def check_images(x, model_name):
    """ValueError unless ``x`` is an image batch [B, 3, H, W] with H, W >= MIN_INPUT_SIZE."""
    if x.dim() != 4 or x.shape[1] != 3 or min(x.shape[-2:]) < MIN_INPUT_SIZE:
        raise ValueError(f"{model_name} input must be [B, 3, H, W] with H, W >= {MIN_INPUT_SIZE}; "
                         f"got {list(x.shape)}")


class Normalize(nn.Module):
    """Maps [0, 1] images to roughly zero mean, unit scale: ``(x - mean) / std``."""

    def __init__(self, mean=0.5, std=0.25):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std

    def extra_repr(self):
        return f"mean={self.mean}, std={self.std}"


def _conv_block(in_channels, out_channels, convs, pool):
    """[maxpool2] then ``convs`` x (conv3x3, BN, ReLU); layer names conv/bn/relu, conv2/bn2/relu2."""
    layers = [("pool", nn.MaxPool2d(2))] if pool else []
    for k in range(convs):
        suffix = "" if k == 0 else str(k + 1)
        layers += [(f"conv{suffix}", nn.Conv2d(in_channels if k == 0 else out_channels, out_channels, 3,
                                               padding=1, bias=False)),
                   (f"bn{suffix}", nn.BatchNorm2d(out_channels)),
                   (f"relu{suffix}", nn.ReLU(inplace=False))]
    return nn.Sequential(OrderedDict(layers))


class ShapesNet(nn.Sequential):
    """Classifier of the ten shapes classes; input [B, 3, H, W] in [0, 1], H, W >= 32; logits [B, 10]."""

    # The normalization is inside the model: renderers feed [0, 1] images unchanged.
    input_mean = (0.0, 0.0, 0.0)
    input_std = (1.0, 1.0, 1.0)

    def __init__(self, num_classes=10, widths=(16, 32, 64, 96)):
        c1, c2, c3, c4 = widths
        super().__init__(OrderedDict([
            ("normalize", Normalize()),
            ("conv1", _conv_block(3, c1, convs=1, pool=False)),
            ("conv2", _conv_block(c1, c2, convs=1, pool=True)),
            ("conv3", _conv_block(c2, c3, convs=2, pool=True)),
            ("conv4", _conv_block(c3, c4, convs=2, pool=True)),
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(c4, num_classes)),
        ]))

    def forward(self, x):
        check_images(x, "ShapesNet")
        return super().forward(x)
