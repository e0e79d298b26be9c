"""Per-unit random draws: every random number a unit uses comes from its own generators.

A unit's seed is a stable hash of (seed, unit spec) — the spec names the layer and the unit — so
a unit gets the same init noise, jitter shifts, crops and transforms whether it is rendered alone,
in a batch of 256, in another shard or on another day (DESIGN.md "Determinism").

Init noise comes from a generator seeded by the unit's seed. The per-step draws (jitter shifts,
canvas crops, scale/rotation uniforms) are made ``CHUNK`` steps at a time: chunk k of a unit
comes from a generator seeded by (unit seed, k), so any step's draws can be made on demand and
memory holds a few chunks of the batch, whatever the step count. The loop indexes them like
tensors over steps and does no per-item Python work between chunks.

>>> draws = Draws.for_units(units, seed=0, steps=64, jitter=8)
>>> draws.shifts[0].shape          # int64 [B, 2]: (dy, dx) before step 0 (steps + 1 entries)
torch.Size([16, 2])
"""
import hashlib
import numbers
from collections import OrderedDict
from dataclasses import dataclass

import torch

CHUNK = 256  # steps of draws made at once per unit
_CACHED_CHUNKS = 4  # per device: the current and next chunk of the loop, with room to spare


def check_seed(seed):
    """ValueError unless ``seed`` is an integer (Python's or numpy's): 1.5 would be read as 1."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")


def unit_seed(seed: int, unit) -> int:
    """A 63-bit seed from (seed, str(unit)), identical across processes and Python versions."""
    return _seed_of(f"{int(seed)}|{unit}")


def _seed_of(text: str) -> int:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class _StepChunks:
    """The batch's per-step draws, made a chunk at a time and cached (a few chunks per device)."""

    def __init__(self, seeds, jitter):
        self.seeds, self.jitter = seeds, jitter
        self._cache = OrderedDict()

    def get(self, k, device):
        key = (k, str(device))
        if key not in self._cache:
            shifts, crops, affine = [], [], []
            for seed in self.seeds:
                g = torch.Generator().manual_seed(_seed_of(f"{seed}|steps|{k}"))
                shifts.append(torch.randint(-self.jitter, self.jitter + 1, (CHUNK, 2), generator=g))
                crops.append(torch.rand(CHUNK, 2, generator=g))
                affine.append(torch.rand(CHUNK, 2, generator=g))
            self._cache[key] = {name: torch.stack(values, 1).to(device)
                                for name, values in (("shifts", shifts), ("crops", crops), ("affine", affine))}
            while len(self._cache) > _CACHED_CHUNKS:
                self._cache.popitem(last=False)
        return self._cache[key]


class StepDraws:
    """One kind of per-step draw, indexed by step: ``series[t]`` is a tensor [B, 2] on the device."""

    def __init__(self, chunks, name, length, device="cpu"):
        self._chunks, self.name, self.length, self.device = chunks, name, length, device
        self._current = (None, None)  # (chunk index, its rows): a loop's next step skips the cache's lookup

    def __len__(self):
        return self.length

    def __getitem__(self, t):
        if not 0 <= t < self.length:
            raise IndexError(f"step {t} is outside 0..{self.length - 1}")
        chunk, offset = divmod(t, CHUNK)
        if self._current[0] != chunk:
            self._current = (chunk, self._chunks.get(chunk, self.device)[self.name])
        return self._current[1][offset]

    def to(self, device):
        """The same draws, delivered on ``device`` (moved a chunk at a time)."""
        return StepDraws(self._chunks, self.name, self.length, device)


@dataclass
class Draws:
    """The draws of a batch of units."""
    seeds: list            # int per unit
    generators: list       # torch.Generator per unit, for the init noise
    shifts: StepDraws      # int64 [B, 2] per step: jitter (dy, dx) before each step (steps + 1: the last next)
    crops: StepDraws       # float32 [B, 2] per step: crop offsets in [0, 1) of the free canvas range
    affine: StepDraws      # float32 [B, 2] per step: uniform [0, 1) draws for scale and rotation

    @classmethod
    def for_units(cls, units, seed, steps, jitter):
        seeds = [unit_seed(seed, u) for u in units]
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        chunks = _StepChunks(seeds, jitter)
        return cls(seeds, gens, StepDraws(chunks, "shifts", steps + 1), StepDraws(chunks, "crops", steps),
                   StepDraws(chunks, "affine", steps))

    def normal(self, shape):
        """float32 [B, *shape] standard normal noise, one draw per unit from its own generator."""
        return torch.stack([torch.randn(shape, generator=g) for g in self.generators])

    def uniform(self, shape):
        """float32 [B, *shape] uniform [0, 1) noise, one draw per unit."""
        return torch.stack([torch.rand(shape, generator=g) for g in self.generators])
