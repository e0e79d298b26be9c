"""Image parameterizations: what the optimizer changes, behind the one interface the render loop calls.

A parameterization is built per batch as ``Param(run, draws, start)`` (``run``: the render's
shared state — settings ``s``, ``backend``, ``device``, ``channels``, octave ``stages``,
per-step ``sigmas`` and ``lrs``; ``draws``: the batch's per-unit random draws; ``start``: a
function ``hw -> None | float [B, C, H, W]``, the images a task starts from, e.g. a photo) and
offers:

- ``crops``: how many model inputs each image gives per step (k; 1 but for MaCo);
- ``begin(t) -> (H, W)``: start step t; returns the model-input size (changes between octaves);
- ``inputs(t) -> (inputs, wrt)``: the model inputs [B*k, C, H, W] in [0, 1] (row b*k + j is
  input j of image b) and the tensors the objective's gradient is taken with respect to;
  called with autograd enabled;
- ``update(t, grads) -> bool [B]``: one optimization step from those gradients; True where the
  gradient was not finite (the image is then left as it was);
- ``images() -> float [B, C, H', W']`` in [0, 1]: the images now (a canvas may be larger);
- ``alpha() -> None | float [B, 1, H', W']`` in [0, 1]: an attribution map, if the method makes one.

>>> param = PARAMETERIZATIONS[settings.param](run, draws)
"""

from pyviz_fast.engine.parameterizations.fourier import FourierParam
from pyviz_fast.engine.parameterizations.maco import Maco
from pyviz_fast.engine.parameterizations.pixel import PixelImage

PARAMETERIZATIONS = {"pixel": PixelImage, "fourier": FourierParam, "maco": Maco}


def check(settings, starts_from_images=False):
    """Raise ValueError when ``settings`` ask a parameterization for what it cannot do."""
    if settings.param != "pixel" and (settings.octaves > 1 or settings.canvas is not None):
        raise ValueError(f"param={settings.param!r} works at one size: use octaves=1 and canvas=None")
    if settings.param != "pixel" and (starts_from_images or settings.init == "image"):  # they make their own start
        raise ValueError(f"param={settings.param!r} cannot start from given images; use param='pixel'")


__all__ = ["PARAMETERIZATIONS", "check"]
