"""The objective over a run, in memory bounded by the batch, not by the step count.

Rule: a run of ``steps <= MAX_POINTS`` records every step; a longer one records ``MAX_POINTS``
steps spread evenly from the first to the last, step ``j * (steps - 1) // (MAX_POINTS - 1)`` for
j = 0 .. MAX_POINTS - 1 (``recorded_steps``). Every step still counts for the objective's range
(its highest and lowest value) and for the count of faulty steps (``bad_steps``), so a unit
whose objective moved between two recorded steps is not called dead.

>>> trajectory = Trajectory(steps=10**10, batch=4, device="cpu")
>>> trajectory.values.shape
torch.Size([2048, 4])
"""
import torch

from pyviz_fast.ops import nonfinite

MAX_POINTS = 2048


def recorded_steps(steps):
    """The steps whose objective a run of ``steps`` keeps (a range: every step, or MAX_POINTS of them)."""
    if steps <= MAX_POINTS:
        return range(steps)
    return [j * (steps - 1) // (MAX_POINTS - 1) for j in range(MAX_POINTS)]


class Trajectory:
    """``record(t, objective, flagged)`` after step t (objective [B]; flagged: bool [B], the step's
    update skipped an image's non-finite gradient); ``values`` [points, B] holds the recorded
    steps' objectives, ``bad_steps()`` counts each image's steps with either fault."""

    def __init__(self, steps, batch, device):
        self.steps, self.points = steps, min(steps, MAX_POINTS)
        self.values = torch.zeros(self.points, batch, device=device)
        if self.points == self.steps:  # every step kept: its flags beside it, counted once at the end
            self.flagged = torch.zeros(self.points, batch, dtype=torch.bool, device=device)
        else:  # counted as the steps come, with the objective's range
            self.bad = torch.zeros(batch, dtype=torch.int32, device=device)
            self.high = torch.full((batch,), -torch.inf, device=device)
            self.low = torch.full((batch,), torch.inf, device=device)

    def _slot(self, t):
        span, last = self.steps - 1, self.points - 1
        j = -(-t * last // span)  # the first recorded step at or after t
        return j if j * span // last == t else None

    def record(self, t, objective, flagged):
        if self.points == self.steps:  # two writes a step; the checks run once, in bad_steps and spread
            self.values[t] = objective
            self.flagged[t] = flagged
            return
        slot = self._slot(t)
        if slot is not None:
            self.values[slot] = objective
        # the steps not recorded count for the range and the faults as they go
        self.high, self.low = torch.fmax(self.high, objective), torch.fmin(self.low, objective)  # NaN: skipped
        self.bad += flagged | nonfinite(objective)

    def bad_steps(self):
        """int32 [B]: each image's steps whose objective was not finite or whose update was skipped."""
        if self.points == self.steps:
            return (self.flagged | nonfinite(self.values)).sum(0, dtype=torch.int32)
        return self.bad

    def spread(self, final):
        """[B]: the range of the objective over every step and the end (``final``); 0 for a flat one."""
        if self.points == self.steps:  # every step recorded: the range from the values, once
            nan = self.values.isnan()  # skipped, as fmax / fmin skip them
            high = self.values.masked_fill(nan, -torch.inf).amax(0)
            low = self.values.masked_fill(nan, torch.inf).amin(0)
        else:
            high, low = self.high, self.low
        return torch.fmax(high, final) - torch.fmin(low, final)
