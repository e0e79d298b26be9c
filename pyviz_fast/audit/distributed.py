"""torch.distributed for audits launched by ``torchrun``: one process per rank, no scheduler of ours.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous variables; ``Distributed.from_env``
joins the process group (gloo for CPU devices, NCCL for CUDA, each rank on ``cuda:LOCAL_RANK``).
Without torchrun (WORLD_SIZE unset or 1) it is a no-op single process.

>>> dist = Distributed.from_env("cpu")
>>> shard = Shard().split(dist.rank, dist.world_size)
>>> ...render this rank's shard...
>>> dist.barrier(); if dist.is_main: merge()
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    active: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "cpu") -> "Distributed":
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls(device=device)
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        uses_cuda = torch.device(device).type == "cuda"
        if uses_cuda:  # one GPU per local rank
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(local_rank)
        if not tdist.is_initialized():
            tdist.init_process_group(backend="nccl" if uses_cuda else "gloo")
        return cls(rank, world_size, local_rank, device, True)

    def _tensor(self, value: int) -> torch.Tensor:
        # NCCL only reduces device tensors; gloo takes CPU ones
        return torch.tensor([value], dtype=torch.int64, device=self.device if "cuda" in self.device else "cpu")

    def barrier(self) -> None:
        if self.active:
            tdist.barrier()

    def _all_reduce(self, value: int, op) -> int:
        if not self.active:
            return value
        tensor = self._tensor(value)
        tdist.all_reduce(tensor, op=op)
        return int(tensor.item())

    def max(self, value: int) -> int:
        """The largest ``value`` over all ranks (every rank must call it)."""
        return self._all_reduce(value, tdist.ReduceOp.MAX)

    def sum(self, value: int) -> int:
        """The sum of ``value`` over all ranks (every rank must call it)."""
        return self._all_reduce(value, tdist.ReduceOp.SUM)

    def broadcast(self, value):
        """Rank 0's ``value`` (any picklable object) on every rank (every rank must call it)."""
        if not self.active:
            return value
        holder = [value]
        tdist.broadcast_object_list(holder, src=0, device=self.device if "cuda" in self.device else None)
        return holder[0]

    def close(self) -> None:
        if self.active and tdist.is_initialized():
            tdist.destroy_process_group()
            self.active = False
