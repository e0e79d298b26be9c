"""Input photos for the tasks that start from real images (accentuation, caricature, style).

>>> read_photos(["cat.jpg", torch.rand(3, 64, 64)], channels=3, hw=(64, 64)).shape
torch.Size([2, 3, 64, 64])
"""
import os

import torch

from pyviz_fast.engine.init import load_image
from pyviz_fast.engine.models import declared_input_size


def native_size(image):
    """(H, W) of a path, PIL image or tensor [C, H, W] / [H, W]."""
    if isinstance(image, torch.Tensor):
        return tuple(image.shape[-2:])
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image
        try:
            with Image.open(image) as opened:
                return opened.size[::-1]
        except (OSError, ValueError) as error:
            raise ValueError(f"image {os.fspath(image)!r} cannot be read as an image: {error}") from None
    return image.size[::-1]


def photo_size(image, model):
    """(H, W) a task that starts from ``image`` renders at by default: the one input size ``model``
    declares (torchvision's ViT), else the image's own."""
    size = declared_input_size(model)
    return (size, size) if size else native_size(image)


def read_photos(images, channels, hw):
    """float32 [N, C, H, W] in [0, 1] from one image or a list (paths, PIL images, tensors [C, H, W])
    or a tensor [N, C, H, W]; every image resized to hw."""
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        images = list(images)
    if not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise ValueError("no images given")
    return torch.stack([load_image(image, channels, hw) for image in images])


def first_image(images):
    """The first image of what ``read_photos`` accepts (for its native size)."""
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return images[0]
    return images[0] if isinstance(images, (list, tuple)) and images else images
