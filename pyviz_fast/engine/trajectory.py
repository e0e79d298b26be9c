"""The objective over a run, in memory bounded by the batch, not by the step count.

Rule: a run of ``steps <= MAX_POINTS`` records every step; a longer one records ``MAX_POINTS``
steps spread evenly from the first to the last, step ``j * (steps - 1) // (MAX_POINTS - 1)`` for
j = 0 .. MAX_POINTS - 1 (``recorded_steps``). Every step still counts for the objective's range
(its highest and lowest value), so a unit whose objective moved between two recorded steps is
not called dead.

>>> trajectory = Trajectory(steps=10**10, batch=4, device="cpu")
>>> trajectory.values.shape
torch.Size([2048, 4])
"""
import torch

MAX_POINTS = 2048


def recorded_steps(steps):
    """The steps whose objective a run of ``steps`` keeps (a range: every step, or MAX_POINTS of them)."""
    if steps <= MAX_POINTS:
        return range(steps)
    return [j * (steps - 1) // (MAX_POINTS - 1) for j in range(MAX_POINTS)]


class Trajectory:
    """``trajectory[t] = objective`` ([B]) after step t; ``values`` [points, B] holds the recorded steps."""

    def __init__(self, steps, batch, device):
        self.steps, self.points = steps, min(steps, MAX_POINTS)
        self.values = torch.zeros(self.points, batch, device=device)
        self.high = torch.full((batch,), -torch.inf, device=device)
        self.low = torch.full((batch,), torch.inf, device=device)

    def _slot(self, t):
        if self.points == self.steps:
            return t
        span, last = self.steps - 1, self.points - 1
        j = -(-t * last // span)  # the first recorded step at or after t
        return j if j * span // last == t else None

    def __setitem__(self, t, objective):
        slot = self._slot(t)
        if slot is not None:
            self.values[slot] = objective
        if self.points < self.steps:  # the steps not recorded count for the range as they go
            self.high, self.low = torch.fmax(self.high, objective), torch.fmin(self.low, objective)  # NaN: skipped

    def spread(self, final):
        """[B]: the range of the objective over every step and the end (``final``); 0 for a flat one."""
        high, low = self.high, self.low
        if self.points == self.steps:  # every step recorded: the range from the values, once
            nan = self.values.isnan()  # skipped, as fmax / fmin skip them
            high = self.values.masked_fill(nan, -torch.inf).amax(0)
            low = self.values.masked_fill(nan, torch.inf).amin(0)
        return torch.fmax(high, final) - torch.fmin(low, final)
