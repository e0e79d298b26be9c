"""The shipped models: architecture, weights file and training recipe of each, by name.

One table serves the factories (``pyviz_fast.zoo.shapesnet()`` ...), ``load_model`` and the
training script, so a new zoo model is one entry here plus its architecture module.
"""
import pathlib
from dataclasses import dataclass

from pyviz_fast.zoo.augment import Augment
from pyviz_fast.zoo.shapes_resnet import ShapesResNet
from pyviz_fast.zoo.shapes_vit import ShapesViT
from pyviz_fast.zoo.shapesnet import ShapesNet

HERE = pathlib.Path(__file__).parent


@dataclass(frozen=True)
class ZooEntry:
    """A zoo model: how to build it, where its weights live, how train_shapes trains it."""
    architecture: type
    weights: pathlib.Path
    steps: int
    lr: float
    weight_decay: float = 0.05
    batch_size: int = 64
    augment: Augment = Augment()


ZOO = {
    "shapesnet": ZooEntry(ShapesNet, HERE / "shapesnet.pt", steps=1200, lr=3e-3),
    "shapes_resnet": ZooEntry(ShapesResNet, HERE / "shapes_resnet.pt", steps=500, lr=3e-3),
    # The ViT read MaCo's noise-like texture as a class and a 4/255 PGD fooled it on 34 % of real
    # images: "no class" textures, texture blends and FGSM (~4/255) make it robust (MODEL_CARD.md).
    "shapes_vit": ZooEntry(ShapesViT, HERE / "shapes_vit.pt", steps=1000, lr=1e-3,
                           augment=Augment(textures=0.2, blend=0.5, blend_max=0.6, fgsm_eps=0.0157)),
}


def entry(name):
    """The ZooEntry called ``name``, or ValueError naming the valid ones."""
    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; valid: {', '.join(ZOO)}")
    return ZOO[name]
