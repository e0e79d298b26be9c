"""Datasets that ground an atlas in real images, from a spec string.

Specs accepted by ``load_dataset(spec, size)``:

- a directory: every image file below it, in sorted path order; when the images sit in
  sub-folders, the first folder level names the class (``train/cat/1.jpg`` -> label ``cat``);
- ``shapes:N``: N images of the package's procedural shapes (``pyviz_fast.zoo.shapes_data``),
  labels from ``SHAPES_CLASSES``, image i the same for any worker or run;
- ``package.module:factory``: ``factory()`` returns a map-style ``torch.utils.data.Dataset`` whose
  items are an image (float tensor [C, H, W] in [0, 1], or a PIL image) or ``(image, label)``.

Every dataset here yields ``(image float32 [C, size, size] in [0, 1], label int (-1: none), index)``:
images are resized (shorter side to ``size``) and center-cropped, as the model sees renders. It
has ``classes`` (label names, or None) and ``source(i)`` (the file's relative path, or i).

>>> data = load_dataset("shapes:100", size=64)
>>> image, label, index = data[3]; image.shape, data.classes[label]
(torch.Size([3, 64, 64]), 'stripes_135')
"""
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pyviz_fast.engine.models import _factory

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def fit_image(image, size: int) -> torch.Tensor:
    """float32 [C, size, size] in [0, 1] from a PIL image or a [C, H, W] tensor: shorter side
    resized to ``size`` (antialiased), then the center cropped."""
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
        image = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise ValueError(f"a dataset image must be a PIL image or a [C, H, W] tensor, got "
                         f"{type(image).__name__} {tuple(getattr(image, 'shape', ()))}")
    image = image.float()
    height, width = image.shape[-2:]
    if (height, width) != (size, size):
        scale = size / min(height, width)
        new = (max(size, round(height * scale)), max(size, round(width * scale)))
        image = F.interpolate(image[None], size=new, mode="bilinear", antialias=True, align_corners=False)[0]
        top, left = (new[0] - size) // 2, (new[1] - size) // 2
        image = image[:, top:top + size, left:left + size]
    return image.clamp(0, 1).contiguous()


class ImageFolderDataset(torch.utils.data.Dataset):
    """Every image file under ``root`` (sorted); the first sub-folder level is the class."""

    def __init__(self, root, size: int):
        self.root, self.size = Path(root), size
        self.paths = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.paths:
            raise ValueError(f"dataset folder {str(self.root)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        folders = [p.relative_to(self.root).parts[0] if len(p.relative_to(self.root).parts) > 1 else None
                   for p in self.paths]
        self.classes = sorted({f for f in folders if f is not None}) or None
        index = {name: k for k, name in enumerate(self.classes or [])}
        self.labels = [index.get(f, -1) for f in folders]

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as image:
            return fit_image(image, self.size), self.labels[i], i

    def source(self, i):
        return self.paths[i].relative_to(self.root).as_posix()


class ShapesDataset(torch.utils.data.Dataset):
    """``count`` procedural shapes images; image i has label i mod 10 and its own seed."""

    def __init__(self, count: int, size: int, seed: int = 0):
        from pyviz_fast.zoo.shapes_data import SHAPES_CLASSES
        self.count, self.size, self.seed, self.classes = count, size, seed, list(SHAPES_CLASSES)

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        from pyviz_fast.zoo.shapes_data import make_batch
        label = i % len(self.classes)
        images, _ = make_batch(1, size=self.size, seed=self.seed * 1_000_003 + i, labels=torch.tensor([label]))
        return images[0], label, i

    def source(self, i):
        return i


class FactoryDataset(torch.utils.data.Dataset):
    """A user's map-style dataset with its items brought to this module's format."""

    def __init__(self, dataset, size: int):
        self.dataset, self.size = dataset, size
        self.classes = list(getattr(dataset, "classes", None) or []) or None

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        item = self.dataset[i]
        image, label = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, -1)
        label = int(label) if isinstance(label, (int, np.integer)) or (isinstance(label, torch.Tensor)
                                                                      and label.numel() == 1) else -1
        return fit_image(image, self.size), label, i

    def source(self, i):
        return i


def load_dataset(spec: str, size: int, seed: int = 0) -> torch.utils.data.Dataset:
    """The dataset for ``spec`` (see the module docstring) yielding images of ``size`` px."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"dataset spec must be a non-empty string, got {spec!r}")
    if spec.startswith("shapes:"):
        count = spec.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"dataset spec {spec!r}: shapes:N needs a positive count N, e.g. shapes:2000")
        return ShapesDataset(int(count), size, seed)
    if Path(spec).is_dir():
        return ImageFolderDataset(spec, size)
    if ":" in spec and not Path(spec).exists():
        dataset = _factory(spec, "dataset")
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise ValueError(f"dataset spec {spec!r} returned {type(dataset).__name__}, "
                             "not a map-style Dataset (with __len__ and __getitem__)")
        return FactoryDataset(dataset, size)
    raise ValueError(f"dataset spec {spec!r} is not a folder of images, shapes:N or package.module:factory")
