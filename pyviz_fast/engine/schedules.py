"""Per-step schedules (blur sigma, learning rate) and octave stages.

>>> [round(v, 3) for v in decay(1.0, 0.3, 5, "linear")]
[1.0, 0.825, 0.65, 0.475, 0.3]
>>> stages((128, 128), steps=90, octaves=3, scale=1.2)
[((89, 89), 30), ((107, 107), 30), ((128, 128), 30)]
"""
import math
from collections.abc import Sequence


def decay(start, end, steps, kind="linear"):
    """``steps`` values going from ``start`` to ``end`` (inclusive): linear, geometric or cosine."""
    return Schedule(start, end, steps, kind)


class Schedule(Sequence):
    """The values of ``decay``, computed on demand (O(1) each): 10**10 steps take no memory."""

    def __init__(self, start, end, steps, kind="linear"):
        self.start, self.end, self.steps, self.kind = float(start), float(end), steps, kind

    def __len__(self):
        return self.steps

    def __getitem__(self, t):
        if isinstance(t, slice):
            return [self[i] for i in range(*t.indices(self.steps))]
        if not 0 <= t < self.steps:
            raise IndexError(f"step {t} is outside 0..{self.steps - 1}")
        start, end = self.start, self.end
        if self.steps == 1:
            return start
        f = t / (self.steps - 1)
        if self.kind == "geometric" and start > 0 and end > 0:
            return start * (end / start) ** f
        if self.kind == "cosine":
            return end + (start - end) * 0.5 * (1 + math.cos(math.pi * f))
        return start + (end - start) * f


def stages(hw, steps, octaves, scale):
    """[(stage (H, W), stage steps)]: each stage ``scale`` times the previous, the last at ``hw``.

    Steps are split evenly; the last stage takes the remainder. Every stage gets >= 1 step.
    """
    if steps < octaves:
        raise ValueError(f"steps ({steps}) must be at least octaves ({octaves}): every octave needs a step")
    per, extra = divmod(steps, octaves)
    out = []
    for k in range(octaves):
        f = scale ** (octaves - 1 - k)
        out.append(((max(1, round(hw[0] / f)), max(1, round(hw[1] / f))), per + (extra if k == octaves - 1 else 0)))
    return out
