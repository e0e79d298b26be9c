"""RenderResult: the images of a render and everything known about how each was made.

>>> res = pvf.render(model, "conv3:0-3")
>>> res.images.shape, res.status[0], res.to_uint8().shape
(torch.Size([4, 3, 128, 128]), 'ok', (4, 128, 128, 3))
"""
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch


def images_to_uint8(images: torch.Tensor):
    """float [B, C, H, W] in [0, 1] (CPU) -> numpy uint8 [B, H, W, C], rounded to nearest."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@dataclass
class RenderResult:
    """images: float32 [N, C, H, W] in [0, 1] on the CPU, in the order of ``units``.
    objective: float32 [N] final objective value of each unit; trajectory: float32 [N, P], the
    objective after each step for runs of up to 2048 steps, else after 2048 steps spread evenly
    from the first to the last (``engine.trajectory.recorded_steps(steps)`` names them).
    seeds: per-unit seeds (see draws.unit_seed). status: 'ok' | 'dead' (the objective did not
    change at any step: the unit does not respond to the image) | 'nonfinite' (some steps had
    non-finite gradients and were skipped) | 'failed'; reasons: '' or why.
    timings: seconds: total, setup, forward_backward, step (CPU wall clock; on CUDA the phases
    are measured without synchronizing, so only 'total' is exact). settings: the Settings used;
    info: precision, memory format, backend, device actually used; facets: images per unit
    (a unit's facets are consecutive rows); shared_layers: {layer: calls} of the layers read
    whose module runs several times per forward (the first call is the layer's); photo_objective
    (only when the render started from a photo: accentuate, caricature, dream, style): float32 [N],
    each row's objective on that photo, scored as ``objective`` is (the trajectory's first point is
    the first step's jittered input). alpha: None, or float32 [N, 1, H, W] in [0, 1], the
    attribution map of methods that make one (MaCo: where the accumulated input gradients were
    large); ``to_rgba`` puts it in the alpha channel.
    """
    images: torch.Tensor
    units: list
    objective: torch.Tensor
    trajectory: torch.Tensor
    seeds: List[int]
    status: List[str]
    reasons: List[str]
    timings: dict
    settings: object = None
    info: dict = field(default_factory=dict)
    alpha: Optional[torch.Tensor] = None

    def __len__(self):
        return len(self.units)

    def __repr__(self):
        shape = "x".join(str(d) for d in self.images.shape[1:])
        return (f"RenderResult({len(self)} units, {shape}, {sum(s == 'ok' for s in self.status)} ok, "
                f"backend {self.info.get('backend', '?')}, {self.timings.get('total', float('nan')):.1f} s)")

    @property
    def ok(self):
        """True when every unit has status 'ok'."""
        return all(s == "ok" for s in self.status)

    def to_uint8(self, rows=slice(None)):
        """numpy uint8 [N, H, W, C] of ``rows`` (a slice or a list of indices; default all)."""
        return images_to_uint8(self.images[rows])

    def to_uint8_rgba(self, rows=slice(None)):
        """numpy uint8 [N, H, W, 4] of ``rows``: the images as RGB (gray repeated) with ``alpha`` as
        their alpha channel (ValueError without one)."""
        if self.alpha is None:
            raise ValueError("this result has no alpha map (param='maco' makes one)")
        rgb = images_to_uint8(self.images[rows])[..., :3]
        rgb = np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb
        return np.ascontiguousarray(np.concatenate([rgb, images_to_uint8(self.alpha[rows])], axis=-1))

    def to_rgba(self, i):
        """Image i as a PIL 'RGBA' image whose transparency is ``alpha`` (ValueError without one)."""
        from PIL import Image

        return Image.fromarray(self.to_uint8_rgba([i])[0], "RGBA")  # [i]: a slice of -1 would be empty

    def to_pil(self, i):
        """Image i as a PIL image: 'L' for 1 channel, 'RGB' for 3, 'RGBA' for 4; other channel
        counts show their first three channels as RGB (the first alone if fewer)."""
        from PIL import Image

        array = self.to_uint8([i])[0]  # image i alone: a loop over a big result converts each once
        channels = array.shape[-1]
        if channels in (1, 2):
            return Image.fromarray(np.ascontiguousarray(array[..., 0]), "L")
        if channels == 4:
            return Image.fromarray(array, "RGBA")
        return Image.fromarray(np.ascontiguousarray(array[..., :3]), "RGB")

    def to_html_grid(self, cols=8, limit=None, size=128):
        """The images as an ``ImageGrid`` (HTML): unit, objective and status under each image,
        failures' reasons on hover; the first ``limit`` units (default display.DEFAULT_LIMIT)."""
        from pyviz_fast.engine import display

        limit = display.DEFAULT_LIMIT if limit is None else limit
        display.check_layout(cols, limit, size)
        shown = range(min(len(self), limit))
        captions = [f"{unit}\n{float(value):.4g} {status}" for unit, value, status
                    in zip(self.units, self.objective.tolist(), self.status)]
        titles = [reason or status for reason, status in zip(self.reasons, self.status)]
        return display.image_grid([self.to_pil(i) for i in shown], captions, titles=titles, total=len(self),
                                  cols=cols, limit=limit, size=size, heading=repr(self))

    def _repr_html_(self):
        """Jupyter shows a result as a grid of its images (the first display.DEFAULT_LIMIT)."""
        return self.to_html_grid()._repr_html_()

    def show(self, cols=8, limit=None, size=128):
        """Displays the grid of images in a notebook (elsewhere returns the ``ImageGrid``)."""
        from pyviz_fast.engine import display

        return display.show(self, cols=cols, limit=limit, size=size)
