"""Zero-argument model factories for the CLI tests (``--model cli_models:NAME`` with this folder on
PYTHONPATH): models that take other than 3 input channels, and models that misbehave."""
import logging
import warnings
from collections import OrderedDict

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


def brightness_net():
    """A 1x1 conv whose channel 0 sums the pixels (channel 1 is minus that): ascent drives every
    pixel to white (black), a picture of one flat colour."""
    conv = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1).expand(2, 3, 1, 1))
    return nn.Sequential(OrderedDict(conv=conv))


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


class SharedReLUNet(nn.Module):
    """One ``nn.ReLU`` used after both convolutions, as a torchvision ResNet block uses its ``relu``:
    the layer 'act' is 4 channels at its first call, 6 at its second."""

    def __init__(self, head_size=None):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
        self.act = nn.ReLU()
        # head_size: a flattening head made for one input size (it fails at any other)
        self.fc = nn.Linear(6 * head_size ** 2, 5) if head_size else nn.Linear(6, 5)
        self.head_size = head_size

    def forward(self, x):
        x = self.act(self.conv2(self.act(self.conv1(x))))
        return self.fc(x.flatten(1) if self.head_size else x.mean((2, 3)))


def shared_relu_net():
    torch.manual_seed(0)
    return SharedReLUNet()


class _NoGradStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.head = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)

    def forward(self, x):
        with torch.no_grad():
            x = self.stem(x)
        return self.head(x)


def no_grad_stem_net():
    """A frozen stem computed under no_grad: no layer connects to the image through autograd."""
    torch.manual_seed(0)
    return _NoGradStem()


class _SequenceFirstViT(nn.Module):
    """4x4 patches -> tokens -> two encoder layers run sequence-first ([N, B, D], as OpenAI's CLIP
    runs its transformer) -> the class token -> 5 logits."""

    def __init__(self):
        super().__init__()
        self.patches = nn.Conv2d(3, 16, 4, stride=4)
        self.encoder = nn.Sequential(*[nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0) for _ in range(2)])
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        tokens = self.patches(x).flatten(2).permute(2, 0, 1)  # [N, B, D]
        return self.head(self.encoder(tokens)[0])


def sequence_first_vit():
    """A transformer whose token layers are [N, B, D]: their rows are tokens, not images."""
    torch.manual_seed(0)
    return _SequenceFirstViT().eval()


def inplace_relu_net(inplace=True):
    """conv -> ReLU(inplace) -> conv -> ReLU(inplace) -> pool -> fc, as torchvision's VGG: each
    convolution's output is rewritten by the ReLU after it."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=inplace),
                         nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=inplace),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5)).eval()


class _Boxed:
    """A result that is no tensor, tuple, list or dict (torchvision's ImageList is such a class)."""

    def __init__(self, tensors):
        self.tensors = tensors


class _Wrap(nn.Module):
    def forward(self, x):
        return _Boxed(x)


class _WrappedInputNet(nn.Module):
    """A preprocessing module whose output holds its tensor in an object, as detection models'
    ``transform`` does: no activation to list or render."""

    def __init__(self):
        super().__init__()
        self.transform, self.net = _Wrap(), tiny_cnn()

    def forward(self, x):
        return self.net(self.transform(x).tensors)


def wrapped_input_net():
    torch.manual_seed(0)
    return _WrappedInputNet().eval()


def small_torchvision_vit():
    """torchvision's VisionTransformer (vit_b_16's classes), small: it runs at 32 px only."""
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32)
