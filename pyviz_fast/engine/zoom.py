"""The DeepDream zoom video ("inceptionism"): dream a frame, zoom into it a little, dream again.

Frame 0 is the photo dreamed; frame k is frame k-1 zoomed (and optionally rotated) about its
centre, then dreamed ``settings.steps`` steps (with ``settings.octaves``, each octave starting
from the frame at that size plus the detail dreamed so far). The zoom is an inverse-mapped
bilinear resample: a pure zoom reads only the central 1/zoom of the frame (a crop, resized back
up); the corners a rotation uncovers are read from the frame mirrored at its edges, so no frame
ever has a black border. Each frame is rounded to 8 bits before the next one is made from it,
so a run resumed from the frames saved on disk makes exactly the frames a run never killed
would have made. Frame k's random draws come from ``seed + k``. A frame is not evaluated after its
dream (its frames are all a zoom keeps), and only frame 0 redirects ReLUs (the later frames start
from a dream that fires).

>>> for k, frame in dream_zoom(model, photo, "conv3@deepdream", frames=48, zoom=1.05):
...     save(k, frame)                                   # frame: float32 [C, H, W] in [0, 1]
>>> for k, frame in dream_zoom(model, last_saved, "conv3@deepdream", frames=48, first=20):
...     save(k, frame)                                   # resume: frames 20..47 from frame 19
"""
import functools
import math

import torch
import torch.nn.functional as F

from pyviz_fast.engine.dream import dream_image, dream_settings, dream_unit
from pyviz_fast.engine.model_defaults import with_model_defaults
from pyviz_fast.engine.render import Renderer, resolve_model

# Dream settings of one frame: a few steps over two octaves. Small steps (DeepDream's gentle
# ascent) keep the photo recognizable in the first frames; the dream builds up over frames.
ZOOM_DEFAULTS = {"steps": 8, "lr": 0.005, "octaves": 2, "octave_scale": 1.4, "blur_start": 1.0, "blur_end": 0.5}
# Frames after the first start from a dream of the same unit, which fires: a redirected step would
# give them the true gradient bit for bit (engine/redirect.py), and its forward costs ~5% of a frame.
_DREAMED = {"redirect_relu_steps": 0}


def zoom_rotate(images, zoom, degrees=0.0):
    """``images`` [B, C, H, W] zoomed in ``zoom`` times (> 1 enlarges) and turned ``degrees``
    counter-clockwise about the centre; same shape. Pixels are square whatever the aspect
    ratio; samples beyond the edges are mirrored back in (no black borders)."""
    grid = _grid(tuple(images.shape), zoom, degrees, images.device)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.clamp(0, 1)


@functools.lru_cache(maxsize=8)
def _grid(shape, zoom, degrees, device):
    """zoom_rotate's sampling grid: every frame of a zoom has the same one, made once (read only)."""
    _, _, H, W = shape
    c, s = math.cos(math.radians(degrees)) / zoom, math.sin(math.radians(degrees)) / zoom
    # output pixel p (from the centre) reads input R(degrees) p / zoom, in grid_sample's [-1, 1] units
    theta = torch.tensor([[c, -s * H / W, 0.0], [s * W / H, c, 0.0]], dtype=torch.float32, device=device)
    return F.affine_grid(theta.expand(shape[0], 2, 3), list(shape), align_corners=False)


def quantize(image):
    """The image as an 8-bit file would hold it (rounded to k/255)."""
    return (image.clamp(0, 1) * 255).round() / 255


def check_zoom(zoom, rotate, frames, first=0):
    """Raise ValueError naming a bad zoom, rotation, frame count or first frame."""
    if not (isinstance(zoom, (int, float)) and math.isfinite(zoom) and zoom > 1):
        raise ValueError(f"zoom must be a number > 1 (1.05 zooms in 5% a frame), got {zoom!r}")
    if not (isinstance(rotate, (int, float)) and math.isfinite(rotate)):
        raise ValueError(f"rotate must be a finite number of degrees per frame, got {rotate!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be an integer >= 1, got {frames!r}")
    if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first <= frames:
        raise ValueError(f"first must be an integer in 0..{frames}, got {first!r}")


def dream_zoom(model, image, unit, frames, *, zoom=1.05, rotate=0.0, settings=None, first=0, backend=None,
               device="cpu", seed=0, callback=None, **overrides):
    """Yield ``(k, frame)`` for k = first .. frames-1 of a DeepDream zoom; frame float32 [C, H, W].

    image: a path, PIL image or tensor [C, H, W] (as ``dream`` takes it): the photo when ``first``
    is 0, else frame first-1 (to resume). unit: one unit spec, e.g. 'conv3@deepdream' (a layer)
    or 'conv3:7' (a channel).
    zoom: > 1, scale per frame; rotate: degrees per frame. settings / overrides: the dream of
    one frame (default ``ZOOM_DEFAULTS`` over ``Settings()``, at the image's size, in one octave
    for a model that runs at one declared size); the init is always the zoomed frame. callback:
    passed to each frame's ``render`` (its StepInfo.rows is always 0:1). Raises ValueError for
    bad arguments before any work, RuntimeError if a frame's dream fails (non-finite values).
    """
    check_zoom(zoom, rotate, frames, first)
    model = resolve_model(model, device, seed)
    image = quantize(dream_image(model, image, settings, overrides))
    defaults = dream_settings(image, settings, ZOOM_DEFAULTS)
    if settings is None:  # the zoom's defaults yield to the model's (one octave at its one input size)
        defaults = with_model_defaults(defaults, model, set(overrides))
    settings = defaults.replace(**overrides).validate()
    unit = dream_unit(model, unit)
    # set up once (model prepared, layers probed, an 'auto' execution decided for all the frames:
    # one frame's steps are too few to repay a trial): every frame has the same size
    with Renderer(model, [unit], settings, backend=backend, device=device, batch_size=1,
                  renders=max(1, frames - first)) as renderer:
        frame = image
        for k in range(first, frames):
            start = frame if k == 0 else zoom_rotate(frame[None], zoom, rotate)[0]
            result = renderer.render(seed=seed + k, callback=callback, evaluate=False, init_image=start,
                                     **({} if k == 0 else _DREAMED))
            if result.status[0] == "failed":
                raise RuntimeError(f"frame {k}: the dream failed: {result.reasons[0]}")
            frame = quantize(result.images[0])
            yield k, frame
