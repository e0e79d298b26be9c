"""Deterministic partition of an audit's work list among shards.

Unit ``k`` of the full work list belongs to shard ``k % count``: every layer is spread over all
shards (deep layers cost more than shallow ones, so contiguous blocks would be unbalanced), the
partition depends only on the work list, and the shards' union is the whole list exactly once.
``--shard i/n`` (by hand) and torchrun ranks compose: rank r of R running shard i/n works on
shard ``i + n * r`` of ``n * R`` (every R-th unit of shard i/n).

>>> Shard.parse("1/4")
Shard(index=1, count=4)
>>> Shard(1, 4).select(list(range(10)))
[1, 5, 9]
"""
import re
from typing import NamedTuple


class Shard(NamedTuple):
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> "Shard":
        match = re.fullmatch(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*", text or "")
        if not match:
            raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"--shard i/n needs n >= 1 and 0 <= i < n, got {text!r}")
        return cls(index, count)

    def split(self, rank: int, world_size: int) -> "Shard":
        """This shard's sub-shard for one of ``world_size`` distributed ranks."""
        return Shard(self.index + self.count * rank, self.count * world_size)

    def select(self, work: list) -> list:
        return work[self.index::self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
