"""Zero-argument model factories for the CLI tests (``--model cli_models:NAME`` with this folder on
PYTHONPATH): models that take other than 3 input channels, and models that misbehave."""
import logging
import warnings

import torch
from torch import nn

from engine_nets import tiny_cnn


def gray_net():
    """One input channel, 5 classes, no class names."""
    return tiny_cnn(in_channels=1)


def rgba_net():
    """Four input channels (RGBA)."""
    return tiny_cnn(in_channels=4)


def five_channel_net():
    """Five input channels: no image file has them."""
    return tiny_cnn(in_channels=5)


class _Refuses(nn.Module):
    def forward(self, x):
        raise RuntimeError("my model refuses this input")


def raising_net():
    """A model whose forward raises its own error after the first conv."""
    model = tiny_cnn()
    model[1] = _Refuses()
    return model


class _Chatty(nn.Module):
    def forward(self, x):
        warnings.warn("a warning from the model's forward")
        logging.getLogger("torch._dynamo").warning("a torch log warning, as torch.compile gives")
        return x


def chatty_net():
    """A model whose forward emits a Python warning and a torch log warning on every call."""
    model = tiny_cnn()
    model[1] = _Chatty()
    return model
