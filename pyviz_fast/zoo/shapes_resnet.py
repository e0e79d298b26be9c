"""ShapesResNet: a small residual network with batch norm for the procedural shapes classes.

Same contract as ShapesNet: RGB images in [0, 1] of any size >= 32 px (normalization inside
the model), class logits out. Top-level children in execution order:

==========  ==================================================  ========================
name        what                                                output for a 64 px input
==========  ==================================================  ========================
normalize   (x - 0.5) / 0.25, fixed                             [B, 3, 64, 64]
stem        conv3x3(3->24) stride 2, BN, ReLU                   [B, 24, 32, 32]
layer1      basic residual block 24->24                         [B, 24, 32, 32]
layer2      basic residual block 24->48, stride 2               [B, 48, 16, 16]
layer3      basic residual block 48->96, stride 2               [B, 96, 8, 8]
layer4      basic residual block 96->96                         [B, 96, 8, 8]
pool        global average pooling                              [B, 96, 1, 1]
flatten                                                         [B, 96]
fc          linear 96->10: class logits (pre-softmax)           [B, 10]
==========  ==================================================  ========================

A block is ``relu_out(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))`` with a 1x1 conv + BN
shortcut where the shape changes. Every ReLU is its own ``nn.ReLU`` module (not in-place),
so hooks see true values and ReLU redirection can swap each one.

Example::

    >>> import torch
    >>> from pyviz_fast.zoo.shapes_resnet import ShapesResNet
    >>> ShapesResNet()(torch.rand(2, 3, 48, 48)).shape
    torch.Size([2, 10])
"""
from collections import OrderedDict

from torch import nn

from pyviz_fast.zoo.shapesnet import Normalize, check_images


class BasicBlock(nn.Module):
    """Two conv3x3+BN with a ReLU between, an identity or 1x1-conv shortcut, ReLU after the sum."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))
        self.relu_out = nn.ReLU()

    def forward(self, x):
        residual = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu_out(residual + self.shortcut(x))


class ShapesResNet(nn.Sequential):
    """Residual classifier of the ten shapes classes; input [B, 3, H, W] in [0, 1], H, W >= 32."""

    input_mean = (0.0, 0.0, 0.0)
    input_std = (1.0, 1.0, 1.0)

    def __init__(self, num_classes=10, widths=(24, 48, 96)):
        c1, c2, c3 = widths
        super().__init__(OrderedDict([
            ("normalize", Normalize()),
            ("stem", nn.Sequential(OrderedDict([
                ("conv", nn.Conv2d(3, c1, 3, stride=2, padding=1, bias=False)),
                ("bn", nn.BatchNorm2d(c1)),
                ("relu", nn.ReLU())]))),
            ("layer1", BasicBlock(c1, c1)),
            ("layer2", BasicBlock(c1, c2, stride=2)),
            ("layer3", BasicBlock(c2, c3, stride=2)),
            ("layer4", BasicBlock(c3, c3)),
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(c3, num_classes)),
        ]))

    def forward(self, x):
        check_images(x, "ShapesResNet")
        return super().forward(x)
