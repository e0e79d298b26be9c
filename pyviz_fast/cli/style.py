"""``pyviz-fast style``: style transfer (Gatys et al.): an image with the content of CONTENT and the
texture statistics (Gram matrices) of STYLE, made by the same render loop as visualizations.
Several STYLE images give one output each (batched in one pass)."""
import argparse
from pathlib import Path

from pyviz_fast.audit.files import save_png_atomic, to_pil
from pyviz_fast.cli.common import CliError, add_image_command_flags, load_model, output_dir, read_image, say
from pyviz_fast.cli.settings_flags import settings_at_image_size
from pyviz_fast.engine.style_transfer import DEFAULTS

EXAMPLES = """examples:
  pyviz-fast style content.png style.png --out styled.png
  pyviz-fast style content.png wave.png dots.png --out styled.png        # styled_0.png, styled_1.png
  pyviz-fast style content.png style.png --model pyviz_fast.zoo.random_vgg:random_vgg --steps 300 --out styled.png
  pyviz-fast style content.png style.png --content-layer conv3 --style-layers conv1,conv2,conv3 --style-weight 10
"""


def _layer_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer names, got {text!r}")
    return names


def register(subparsers) -> None:
    parser = subparsers.add_parser("style", help="style transfer: one image's content, another's texture",
                                   description=__doc__, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("content", help="content image")
    parser.add_argument("styles", nargs="+", metavar="style", help="style image(s)")
    parser.add_argument("--content-layer", default=None, help="layer whose activations keep the content "
                        "(default: the last activation at the second-deepest resolution)")
    parser.add_argument("--style-layers", type=_layer_list, default=None,
                        help="comma-separated layers whose Gram matrices carry the style "
                             "(default: the first activation at each resolution)")
    parser.add_argument("--style-weight", type=float, default=10.0, help="style loss weight (default: %(default)s)")
    parser.add_argument("--content-weight", type=float, default=1.0,
                        help="content loss weight (default: %(default)s)")
    add_image_command_flags(parser, "styled.png", DEFAULTS, run)


def run(args) -> int:
    import pyviz_fast as pvf

    content = read_image(args.content)
    styles = [read_image(path) for path in args.styles]
    model, _ = load_model(args)
    try:
        settings = settings_at_image_size(args, DEFAULTS, content, model)
        result = pvf.style_transfer(model, content, styles, content_layer=args.content_layer,
                                    style_layers=args.style_layers, style_weight=args.style_weight,
                                    content_weight=args.content_weight, settings=settings, backend=args.backend,
                                    device=args.device, seed=args.seed, progress=not args.quiet)
    except (ValueError, TypeError, RuntimeError) as error:
        raise CliError(str(error)) from None
    out = Path(args.out)
    output_dir(out.parent if str(out.parent) else ".")
    paths = [out] if len(styles) == 1 else [out.with_name(f"{out.stem}_{k}{out.suffix}") for k in range(len(styles))]
    try:
        for path, image in zip(paths, result.to_uint8()):
            save_png_atomic(path, to_pil(image))
    except OSError as error:
        raise CliError(f"cannot write {str(out)!r}: {error}") from None
    for path, status, start, end in zip(paths, result.status, result.info["photo_objective"], result.objective):
        say(args, f"styled ({status}, loss {-float(start):.4g} -> {-float(end):.4g}; content "
                  f"{result.info['content_layer']}, style {','.join(result.info['style_layers'])}) -> {path}")
    return 0 if result.ok else 1
