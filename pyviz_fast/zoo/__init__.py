"""Models shipped with pyviz_fast, usable offline.

``shapesnet()`` is the package's default model: a small CNN trained by the project itself on
procedurally generated shapes (see ``MODEL_CARD.md`` beside this file).

Example::

    >>> import pyviz_fast.zoo as zoo
    >>> model = zoo.shapesnet()                     # eval mode, trained weights, no network
    >>> zoo.SHAPES_CLASSES[model(zoo.make_batch(1, seed=0)[0]).argmax()] in zoo.SHAPES_CLASSES
    True
"""
import pathlib

import torch

from pyviz_fast.zoo.shapes_data import SHAPES_CLASSES, make_batch
from pyviz_fast.zoo.shapesnet import ShapesNet

SHAPESNET_WEIGHTS = pathlib.Path(__file__).with_name("shapesnet.pt")

__all__ = ["shapesnet", "ShapesNet", "SHAPES_CLASSES", "SHAPESNET_WEIGHTS", "make_batch"]


def shapesnet(pretrained=True, device=None):
    """The shapes classifier in eval mode with frozen weights.

    Args:
        pretrained: load the shipped weights (``SHAPESNET_WEIGHTS``); False gives a randomly
            initialized model of the same architecture.
        device: where to put the model (default: CPU).

    Returns:
        ``ShapesNet``: input [B, 3, H, W] in [0, 1] with H, W >= 32, output logits [B, 10]
        ordered as ``SHAPES_CLASSES``.
    """
    model = ShapesNet()
    if pretrained:
        if not SHAPESNET_WEIGHTS.is_file():
            raise FileNotFoundError(f"shapesnet weights missing at {SHAPESNET_WEIGHTS}; "
                                    "retrain with: python -m pyviz_fast.zoo.train_shapes")
        model.load_state_dict(torch.load(SHAPESNET_WEIGHTS, map_location="cpu", weights_only=True))
    model.requires_grad_(False)
    model.class_names = SHAPES_CLASSES  # for units such as fc:rings
    return model.to(device or "cpu").eval()
