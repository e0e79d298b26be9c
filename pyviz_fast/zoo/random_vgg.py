"""A small VGG-style network with random weights: texture statistics without any training.

Random-weight convolutional nets give usable Gram-matrix style statistics (Ulyanov et al. 2017;
He et al. 2016, "A powerful generative model using random weights"), so style transfer works
on a fresh clone with nothing downloaded. Layers (``nn.Sequential`` children, VGG naming):
``conv1_1``, ``relu1_1``, ``conv1_2``, ``relu1_2``, ``pool1``, ``conv2_1``, ... ``relu4_1``.

>>> model = random_vgg()                        # seeded: the same weights every time
>>> [name for name, _ in model.named_children()][:3]
['conv1_1', 'relu1_1', 'conv1_2']

Load by spec: ``--model pyviz_fast.zoo.random_vgg:random_vgg``.
"""
from collections import OrderedDict

import torch
from torch import nn

WIDTHS = ((32, 32), (64, 64), (128, 128), (128,))


def random_vgg(seed=0, widths=WIDTHS):
    """The VGG-style net in eval mode with frozen Kaiming-initialized weights drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    layers, channels = OrderedDict(), 3
    for block, block_widths in enumerate(widths, start=1):
        if block > 1:
            layers[f"pool{block - 1}"] = nn.MaxPool2d(2)
        for k, width in enumerate(block_widths, start=1):
            conv = nn.Conv2d(channels, width, 3, padding=1)
            with torch.no_grad():
                conv.weight.normal_(0, (2.0 / (9 * channels)) ** 0.5, generator=generator)
                conv.bias.zero_()
            layers[f"conv{block}_{k}"], layers[f"relu{block}_{k}"] = conv, nn.ReLU()
            channels = width
    model = nn.Sequential(layers)
    model.input_mean, model.input_std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    return model.requires_grad_(False).eval()
