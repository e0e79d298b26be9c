"""Models shipped with pyviz_fast, usable offline.

Three classifiers the project trains itself on the same procedurally generated shapes (see
``MODEL_CARD.md`` beside this file): ``shapesnet()`` (a small CNN, the package's default
model), ``shapes_resnet()`` (a small residual net with batch norm) and ``shapes_vit()`` (a
small patch-token vision transformer). Three different architectures that know the same
classes let the quality metrics ask whether one model's visualizations transfer to another.

Example::

    >>> import pyviz_fast.zoo as zoo
    >>> model = zoo.shapesnet()                     # eval mode, trained weights, no network
    >>> zoo.SHAPES_CLASSES[model(zoo.make_batch(1, seed=0)[0]).argmax()] in zoo.SHAPES_CLASSES
    True
"""
import torch

from pyviz_fast.zoo.catalog import ZOO, entry
from pyviz_fast.zoo.shapes_data import SHAPES_CLASSES, make_batch
from pyviz_fast.zoo.shapes_resnet import ShapesResNet
from pyviz_fast.zoo.shapes_vit import ShapesViT
from pyviz_fast.zoo.shapesnet import ShapesNet

SHAPESNET_WEIGHTS = ZOO["shapesnet"].weights
ZOO_MODELS = tuple(ZOO)

__all__ = ["load", "shapesnet", "shapes_resnet", "shapes_vit", "ShapesNet", "ShapesResNet", "ShapesViT",
           "SHAPES_CLASSES", "SHAPESNET_WEIGHTS", "ZOO_MODELS", "make_batch"]


def load(name, pretrained=True, device=None):
    """The zoo model ``name`` (one of ``ZOO_MODELS``) in eval mode with frozen weights.

    Args:
        name: "shapesnet", "shapes_resnet" or "shapes_vit".
        pretrained: load the shipped weights; False gives a randomly initialized model of
            the same architecture.
        device: where to put the model (default: CPU).

    Returns:
        The model: input [B, 3, H, W] in [0, 1] with H, W >= 32, output logits [B, 10]
        ordered as ``SHAPES_CLASSES``.
    """
    recipe = entry(name)
    model = recipe.architecture()
    if pretrained:
        if not recipe.weights.is_file():
            raise FileNotFoundError(f"{name} weights missing at {recipe.weights}; "
                                    f"retrain with: python -m pyviz_fast.zoo.train_shapes --model {name}")
        model.load_state_dict(torch.load(recipe.weights, map_location="cpu", weights_only=True))
    model.requires_grad_(False)
    model.class_names = SHAPES_CLASSES  # for units such as fc:rings
    return model.to(device or "cpu").eval()


def shapesnet(pretrained=True, device=None):
    """The small CNN (``ShapesNet``); see :func:`load`."""
    return load("shapesnet", pretrained, device)


def shapes_resnet(pretrained=True, device=None):
    """The small residual net with batch norm (``ShapesResNet``); see :func:`load`."""
    return load("shapes_resnet", pretrained, device)


def shapes_vit(pretrained=True, device=None):
    """The small patch-token vision transformer (``ShapesViT``); see :func:`load`."""
    return load("shapes_vit", pretrained, device)
