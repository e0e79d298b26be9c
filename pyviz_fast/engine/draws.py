"""Per-unit random draws: every random number a unit uses comes from its own generator.

A unit's generator is seeded by a stable hash of (seed, unit spec) — the spec names the layer
and the unit — so a unit gets the same init noise, jitter shifts, crops and transforms
whether it is rendered alone, in a batch of 256, in another shard or on another day
(DESIGN.md "Determinism"). Everything is drawn once per batch before the loop, then stacked:
the loop does no per-item Python work.

>>> draws = Draws.for_units(units, seed=0, steps=64, jitter=8)
>>> draws.shifts.shape          # int64 [steps + 1, B, 2]
torch.Size([65, 16, 2])
"""
import hashlib
from dataclasses import dataclass

import torch


def unit_seed(seed: int, unit) -> int:
    """A 63-bit seed from (seed, str(unit)), identical across processes and Python versions."""
    digest = hashlib.blake2b(f"{int(seed)}|{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass
class Draws:
    """Stacked draws of a batch (all on the CPU; the loop moves what it needs once)."""
    seeds: list            # int per unit
    generators: list       # torch.Generator per unit, positioned after the draws below
    shifts: torch.Tensor   # int64 [steps + 1, B, 2]: jitter (dy, dx) before each step (+1: the last next)
    crops: torch.Tensor    # float32 [steps, B, 2]: crop offsets in [0, 1) of the free canvas range
    affine: torch.Tensor   # float32 [steps, B, 2]: uniform [0, 1) draws for scale and rotation

    @classmethod
    def for_units(cls, units, seed, steps, jitter):
        seeds = [unit_seed(seed, u) for u in units]
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        shifts = torch.stack([torch.randint(-jitter, jitter + 1, (steps + 1, 2), generator=g) for g in gens], 1)
        crops = torch.stack([torch.rand(steps, 2, generator=g) for g in gens], 1)
        affine = torch.stack([torch.rand(steps, 2, generator=g) for g in gens], 1)
        return cls(seeds, gens, shifts, crops, affine)

    def normal(self, shape):
        """float32 [B, *shape] standard normal noise, one draw per unit from its own generator."""
        return torch.stack([torch.randn(shape, generator=g) for g in self.generators])

    def uniform(self, shape):
        """float32 [B, *shape] uniform [0, 1) noise, one draw per unit."""
        return torch.stack([torch.rand(shape, generator=g) for g in self.generators])
