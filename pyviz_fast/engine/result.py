"""RenderResult: the images of a render and everything known about how each was made.

>>> res = pvf.render(model, "conv3:0-3")
>>> res.images.shape, res.status[0], res.to_uint8().shape
(torch.Size([4, 3, 128, 128]), 'ok', (4, 128, 128, 3))
"""
from dataclasses import dataclass, field
from typing import List

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
    info: precision, memory format, backend, device actually used.
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

    def __len__(self):
        return len(self.units)

    @property
    def ok(self):
        """True when every unit has status 'ok'."""
        return all(s == "ok" for s in self.status)

    def to_uint8(self):
        """numpy uint8 [N, H, W, C]."""
        return images_to_uint8(self.images)

    def to_pil(self, i):
        """Image i as a PIL image: 'L' for 1 channel, 'RGB' for 3, 'RGBA' for 4; other channel
        counts show their first three channels as RGB (the first alone if fewer)."""
        from PIL import Image

        array = self.to_uint8()[i]
        channels = array.shape[-1]
        if channels in (1, 2):
            return Image.fromarray(np.ascontiguousarray(array[..., 0]), "L")
        if channels == 4:
            return Image.fromarray(array, "RGBA")
        return Image.fromarray(np.ascontiguousarray(array[..., :3]), "RGB")
