"""``pyviz-fast saliency``: the gradient of a class or unit with respect to an input image
(Simonyan et al. 2014): per pixel the largest |gradient| over the color channels, as a heatmap
PNG and as an overlay on the image, both written to the --out directory.

The image is converted to the model's input channels (gray for 1, RGB for 3, RGBA for 4);
--size N scales it so its shorter side is N px (aspect ratio kept), --size HxW exactly."""
import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pyviz_fast.audit.files import save_png_atomic, to_pil
from pyviz_fast.cli.common import CliError, add_common_flags, load_model, output_dir, read_image, say
from pyviz_fast.cli.settings_flags import add_size_flag, fit_size

EXAMPLES = """examples:
  pyviz-fast saliency photo.png --out saliency/                 # the predicted class
  pyviz-fast saliency photo.png --unit fc:3 --size 128 --out saliency/
  pyviz-fast saliency photo.png --unit conv3:7 --out saliency/    # a channel instead of a class
  pyviz-fast saliency photo.png --unit fc:rings --out saliency/   # a class by name
"""

# black -> purple -> red -> yellow -> white: dark where the gradient is small
_HEAT_ANCHORS = np.array([[0, 0, 0], [90, 20, 130], [215, 50, 40], [250, 200, 40], [255, 255, 255]], np.float32)


def register(subparsers) -> None:
    parser = subparsers.add_parser("saliency", help="gradient saliency map of a class or unit for an image",
                                   description=__doc__, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="input image file")
    parser.add_argument("--unit", default=None,
                        help="unit spec, e.g. fc:3 or fc:NAME (default: the model's predicted class, output:K)")
    add_size_flag(parser, "resize the image first: N = its shorter side in px (aspect ratio kept), or HxW exact")
    parser.add_argument("-o", "--out", default=".", help="output directory, created if needed (default: %(default)s)")
    add_common_flags(parser, settings=False)
    parser.set_defaults(run=run)


def heat_colors(heat: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] colors for heat values [H, W] in [0, 1]."""
    positions = np.linspace(0, 1, len(_HEAT_ANCHORS))
    channels = [np.interp(heat, positions, _HEAT_ANCHORS[:, c]) for c in range(3)]
    return np.stack(channels, -1).round().astype(np.uint8)


def _forward(prepared, x, layers):
    """The activations of ``layers``; an error of the model's own forward is a CliError quoting it."""
    try:
        return prepared(x, layers)
    except (ValueError, TypeError) as error:  # ours: unknown layer, layer not called, ...
        raise CliError(str(error)) from None
    except Exception as error:  # noqa: BLE001  (the model's own code: report what it said)
        raise CliError(f"the model's forward rejected an input of shape {list(x.shape)}: "
                       f"{type(error).__name__}: {error} (does it need another --size?)") from None


def saliency(model, image: torch.Tensor, unit_spec: str | None, device="cpu"):
    """(heat float [H, W] in [0, 1], unit, objective value) for image [C, H, W] in [0, 1].

    The heat is max over channels of |d objective / d pixel|, scaled by its 99.5th percentile."""
    from pyviz_fast.engine.execution import PreparedModel
    from pyviz_fast.engine.layers import probe_activations
    from pyviz_fast.engine.objectives import ObjectivePlan
    from pyviz_fast.engine.settings import Settings
    from pyviz_fast.engine.units import OUTPUT, parse_units

    exact = Settings(precision="fp32", memory_format="contiguous")
    x = image[None].to(device).requires_grad_(True)
    with PreparedModel(model, exact, device) as prepared:
        if unit_spec is None:
            with torch.no_grad():
                logits = _forward(prepared, x.detach(), [OUTPUT])[OUTPUT]
            if logits.dim() != 2:
                raise CliError(f"the model's output is {list(logits.shape)}, not [B, K] class logits; "
                               "name a unit with --unit")
            unit_spec = f"{OUTPUT}:{int(logits[0].argmax())}"
        units = parse_units(unit_spec, model=model)
        if len(units) != 1:
            raise CliError(f"--unit must name one unit, {unit_spec!r} names {len(units)}")
        hw = tuple(image.shape[-2:])
        shapes = probe_activations(prepared, units[0].layers, image.shape[0], [hw])[hw]  # with their layouts
        with torch.enable_grad():
            acts = _forward(prepared, x, units[0].layers)
            try:
                objective = ObjectivePlan(units, shapes, device)(acts)
                objective.sum().backward()
            except (ValueError, RuntimeError, TypeError) as error:
                raise CliError(f"saliency of {unit_spec!r} failed: {error}") from None
    grad = x.grad[0].abs().amax(0).cpu()
    top = torch.quantile(grad.flatten(), 0.995).clamp_min(1e-12)
    return (grad / top).clamp(0, 1).numpy(), str(units[0]), float(objective[0].detach())


def run(args) -> int:
    from pyviz_fast.engine.models import input_channels
    from pyviz_fast.engine.units import ClassNames, parse_units

    model, _ = load_model(args)
    image = read_image(args.image, input_channels(model))
    if args.size:
        image = torch.nn.functional.interpolate(image[None], size=fit_size(args.size, image.shape[-2:]),
                                                mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)
    heat, unit, value = saliency(model, image, args.unit, args.device)
    name = ClassNames(model).name_of(parse_units(unit, model=model)[0])
    out = output_dir(args.out)
    stem = Path(args.image).stem
    colors = heat_colors(heat)
    base = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    base = np.repeat(base, 3, 2) if base.shape[2] == 1 else base[:, :, :3]
    alpha = (0.25 + 0.65 * heat)[:, :, None]  # the image stays visible where the gradient is small
    overlay = (base * (1 - alpha) + colors * alpha).round().astype(np.uint8)
    paths = out / f"{stem}_saliency.png", out / f"{stem}_overlay.png"
    try:
        save_png_atomic(paths[0], to_pil(colors))
        save_png_atomic(paths[1], Image.fromarray(overlay, "RGB"))
    except OSError as error:
        raise CliError(f"cannot write to {str(out)!r}: {error}") from None
    say(args, f"saliency of {unit}" + (f" ({name})" if name else "") + f" (objective {value:.4g}) -> {paths[0]}, {paths[1]}")
    return 0
