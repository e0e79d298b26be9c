"""Make the README's pictures of the methods (docs/methods.png, docs/styled.png) on the shipped ShapesNet.

    python docs/make_methods_pictures.py          # a few minutes on a 2-core CPU
"""
import pathlib

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

import pyviz_fast as pvf
from pyviz_fast.engine.accentuate import accentuation_panel
from pyviz_fast.engine.result import images_to_uint8
from pyviz_fast.zoo.random_vgg import random_vgg
from pyviz_fast.zoo.shapes_data import make_batch

DOCS = pathlib.Path(__file__).parent
SIZE, SCALE = 64, 2
COMMON = dict(size=SIZE, precision="fp32", seed=0)


def on_checker(rgba):
    """float [4, H, W] -> [3, H, W]: the image over a gray checkerboard where alpha is low."""
    h, w = rgba.shape[-2:]
    checker = ((torch.arange(h)[:, None] // 8 + torch.arange(w)[None] // 8) % 2 * 0.25 + 0.5).expand(3, h, w)
    return rgba[:3] * rgba[3:] + checker * (1 - rgba[3:])


def strip(title, images):
    """A titled row of float [C, H, W] images, upscaled."""
    row = torch.cat([F.interpolate(i[None], scale_factor=SCALE, mode="nearest")[0] for i in images], dim=-1)
    picture = Image.fromarray(images_to_uint8(row[None])[0])
    canvas = Image.new("RGB", (picture.width, picture.height + 18), "white")
    canvas.paste(picture, (0, 18))
    ImageDraw.Draw(canvas).text((4, 3), title, fill="black")
    return canvas


def main():
    torch.set_num_threads(2)
    model = pvf.zoo.shapesnet()
    photos = make_batch(8, size=SIZE, seed=1)[0]
    rows = []
    maco = pvf.render(model, "fc:0-4", steps=64, param="maco", maco_crops=6,
                      maco_magnitude="shapes", **COMMON)
    rows.append(strip("MaCo: class logits 0-4 (phase only, shapes spectrum); below, with the alpha map",
                      list(maco.images)))
    rows.append(strip("", [on_checker(torch.cat([i, a])) for i, a in zip(maco.images, maco.alpha)]))
    facets = pvf.render(model, "conv4:5", facets=4, diversity_layer="conv3", steps=96, **COMMON)
    rows.append(strip("facets: conv4:5, four images pushed apart by the Gram diversity penalty at conv3",
                      list(facets.images)))
    accent = pvf.accentuate(model, photos[0], "conv4:7", layer="conv2", precision="fp32")
    caricature = pvf.caricature(model, photos[0], "conv3", precision="fp32", steps=64)
    rows.append(strip("accentuation of conv4:7 in a photo: photo | accentuated | difference;  caricature at conv3",
                      [accentuation_panel(accent.info["photo"], accent.images[0]), caricature.images[0]]))
    y, x = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    disk = (((x - 0.35) ** 2 + (y - 0.4) ** 2) < 0.05).float()
    content = torch.stack([0.15 + 0.5 * x + 0.35 * disk, 0.2 + 0.3 * y + 0.3 * disk,
                           0.6 - 0.3 * x + 0.2 * disk]).clamp(0, 1)
    styles = photos[[2, 3, 5]]
    styled = pvf.style_transfer(random_vgg(), content, styles, steps=160, precision="fp32", seed=0)
    rows.append(strip("style transfer (random-weight VGG-style net): content | styles | styled",
                      [content, *styles, *styled.images]))
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        sheet.paste(row, (0, top))
        top += row.height
    sheet.save(DOCS / "methods.png", optimize=True)
    rows[-1].save(DOCS / "styled.png", optimize=True)


if __name__ == "__main__":
    main()
