"""The torch optimizers the non-fused paths share ('adam', 'nadam'), with a per-step learning rate."""
import torch

from pyviz_fast.ops import nonfinite

_OPTIMIZERS = {"adam": torch.optim.Adam, "nadam": torch.optim.NAdam}


class Ascent:
    """Maximizes through a torch optimizer: ``step(grad, lr)`` sets the learning rate and ascends."""

    def __init__(self, name, param, lr):
        self.param = param
        self.optimizer = _OPTIMIZERS[name]([param], lr=lr)

    def step(self, grad, lr):
        self.optimizer.param_groups[0]["lr"] = lr
        self.param.grad = -grad  # torch optimizers minimize
        self.optimizer.step()


def nonfinite_rows(grad):
    """(grad with non-finite rows zeroed, bool [B] of those rows). A row is found by its sum (one
    read; 25x faster than isfinite + all), so one whose finite values overflow float32 when
    summed counts as non-finite too, as in the fused step."""
    bad = nonfinite(grad.flatten(1).sum(1))
    zero = torch.zeros((), device=grad.device, dtype=grad.dtype)
    return torch.where(bad.view((-1,) + (1,) * (grad.dim() - 1)), zero, grad), bad
