"""Which layers of a model are its blocks: the layers an atlas renders by default (the model's
conv stages, inception blocks, transformer blocks), and where style transfer looks when a model
applies its activations as functions rather than modules.

>>> default_atlas_layers(model, pvf.layers(model, (3, 224, 224)))   # torchvision resnet18
['conv1', 'layer1', 'layer2', 'layer3', 'layer4']
"""
import math
import re

import torch

# Activation modules by class name (the layers style transfer reads, and a transformer block's MLP neurons).
ACTIVATIONS = ("ReLU", "ReLU6", "LeakyReLU", "PReLU", "GELU", "SiLU", "Hardswish", "Mish", "ELU", "SELU", "CELU")


def _contains_conv(module) -> bool:
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in module.modules())


# An attention module's class name: timm's ``Attention``, torchvision's ``ShiftedWindowAttention``
# and ``ShiftedWindowAttentionV2`` (not a block named after it, such as ``AttentionBlock``).
_ATTENTION_CLASS = re.compile(r"Attention(V\d+)?$")


def _attention_count(module) -> int:
    return sum(isinstance(m, torch.nn.MultiheadAttention) or bool(_ATTENTION_CLASS.search(type(m).__name__))
               for m in module.modules())


def _is_block(module, shape) -> bool:
    """A map [C, H, W] or [H, W, C] made by a convolution or by attention (a Swin stage), or tokens
    [N, D] of one transformer block (one attention inside: the encoder holding all blocks is not
    one; a map keeps its resolutions apart, so a stage of several blocks is one layer)."""
    rank = len(tuple(shape))
    return ((rank == 3 and (_contains_conv(module) or _attention_count(module) > 0))
            or (rank == 2 and _attention_count(module) == 1))


def _spatial(shape, layout) -> tuple:
    """The positions of a map [C, H, W] or [H, W, C] (H, W) or of tokens [N, D] (N)."""
    if len(shape) == 3:
        return tuple(shape[:2]) if layout == "nhwc" else tuple(shape[1:])
    return tuple(shape[:1])


def _monotonic(values) -> bool:
    return all(a >= b for a, b in zip(values, values[1:])) or all(a <= b for a, b in zip(values, values[1:]))


def _mlp_neurons(block, infos) -> str:
    """A transformer block's MLP neurons: its one activation module with a token output (the GELU
    between the MLP's two linear layers), else the block itself."""
    inside = [info.name for info in infos if info.name.startswith(block + ".") and info.type in ACTIVATIONS
              and info.layout == "tokens"]
    return inside[0] if len(inside) == 1 else block


def default_atlas_layers(model, infos) -> list[str]:
    """The model's own choice when it names one (an ``atlas_layers`` attribute), else the
    conv/block layers: the outermost modules whose [C, H, W] output comes from a convolution, or
    whose token output [N, D] is one transformer block's; a module that spans several resolutions
    (its outermost such descendants differ in H, W, or tokens) in a chain (an ``nn.Sequential``,
    or resolutions that only fall or only rise in call order) is replaced by those descendants, so
    a whole-network container such as vgg's or convnext's ``features`` becomes its stages, while
    an inception block (parallel branches, also those of a reduction block that shrink at
    different points: inception_v3's Mixed_6a) or a resnet stage stays one layer. A transformer
    block is read at its MLP neurons, after the activation between the MLP's two linear layers:
    Ghiasi et al. (2022) found those give a ViT's interpretable images, where the block's output
    (the residual stream) and the attention's keys, queries and values do not. So: shapesnet
    conv1-conv4; googlenet conv1-3 and the inception blocks; resnet conv1 and layer1-4; vgg16 its
    13 convolutions; convnext the stem, stages and downsamplings; swin_t and swin_v2_t the patch
    embedding and the 4 stages; vit_b_16 the patch embedding and the MLP neurons of its 12 encoder
    blocks (``encoder.layers.encoder_layer_K.mlp.1``). The root module itself is not a layer."""
    modules = dict(model.named_modules())
    chosen = getattr(model, "atlas_layers", None)
    if chosen:
        return [info.name for info in infos if info.name in set(chosen)]
    shapes = {info.name: info.shape for info in infos}
    layouts = {info.name: info.layout for info in infos}
    candidates = [name for name, shape in shapes.items() if name in modules and layouts[name] is not None
                  and _is_block(modules[name], shape)]

    def outermost(names):
        keep = set(names)
        return [n for n in names if not any(".".join(n.split(".")[:k]) in keep for k in range(1, n.count(".") + 1))]

    def pick(names):
        chosen = []
        for name in outermost(names):
            inside = [n for n in names if n.startswith(name + ".")]
            sizes = [math.prod(_spatial(shapes[n], layouts[n])) for n in outermost(inside)]  # in call order
            chain = isinstance(modules[name], torch.nn.Sequential) or _monotonic(sizes)
            chosen += pick(inside) if len(set(sizes)) > 1 and chain else [name]
        return chosen

    return [_mlp_neurons(name, infos) if layouts[name] == "tokens" else name for name in pick(candidates)]
