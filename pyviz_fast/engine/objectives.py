"""Per-image objectives of a batch, computed with one gather per (layer, kind) group.

Activations come with their layout (``engine/layout.py``: nchw, nhwc, tokens or vector), so
channel c means the same thing in every layout: for tokens a channel is a feature dimension,
averaged over tokens, and a neuron is one token's feature; for vectors a channel is a logit.

- channel:   mean over positions of channel c
- neuron:    channel c at one position (center by default)
- deepdream: mean over everything of the activation squared
- class:     logit c of a [B, K] output
- direction: sum_c v_c * a_c at each position, mean over positions

Item b's objective is the weighted sum of its unit's terms. Everything is computed in float32.

>>> plan = ObjectivePlan(units, shapes)       # shapes: {layer: layout.Activation}
>>> objective = plan(acts)                     # float32 [B]
>>> every = plan.per_example(acts)             # float32 [N, U]: every unit on every image (dataset pass)
"""
import torch

from pyviz_fast.engine.layout import Activation
from pyviz_fast.engine.units import Term


def check_term(term: Term, unit, act: Activation):
    """Raise ValueError if ``term`` cannot be evaluated on the activation ``act``."""
    where = f"unit {str(unit)!r}: layer {term.layer!r} (output {act.describe()})"
    channels = act.channels
    if term.index is not None and not 0 <= term.index < channels:
        raise ValueError(f"{where} has {channels} channels (0-{channels - 1}); got channel {term.index}")
    if term.kind == "class" and act.layout != "vector":
        raise ValueError(f"{where} is not a [B, K] output; a class unit needs logits")
    if term.kind == "direction" and len(term.vector) != channels:
        raise ValueError(f"{where}: direction has {len(term.vector)} values, the layer {channels} channels")
    if term.kind == "neuron" and term.position is not None:
        grid = act.positions
        if len(term.position) != len(grid) or not all(0 <= p < n for p, n in zip(term.position, grid)):
            form = ", ".join(f"0-{n - 1}" for n in grid)
            raise ValueError(f"{where}: neuron position {term.position} is outside the grid {grid}; "
                             f"it takes @neuron({form})" + (" (a token's index)" if act.layout == "tokens" else ""))


class _Group:
    """All terms of one (layer, kind) in the batch: rows, channels, positions, weights as tensors."""

    def __init__(self, layer, kind, entries, act, device):
        self.layer, self.kind, self.activation = layer, kind, act
        rows, terms = zip(*entries)
        self.rows = torch.tensor(rows, device=device)
        self.in_order = list(rows) == list(range(len(rows)))  # row r is image r: x[rows] is x
        self.weights = torch.tensor([t.weight for t in terms], dtype=torch.float32, device=device)
        self.channels = torch.tensor([t.index or 0 for t in terms], device=device)
        grid = act.positions
        pos = [t.position if t.position is not None else tuple(n // 2 for n in grid) for t in terms]
        self.positions = tuple(torch.tensor(p, device=device) for p in zip(*pos)) if grid else ()
        if kind == "direction":
            self.vectors = torch.tensor([t.vector for t in terms], dtype=torch.float32, device=device)

    def tiled(self, n):
        """This group evaluated on each of ``n`` images: rows 0..n-1, each with every term."""
        tiled = object.__new__(_Group)
        tiled.layer, tiled.kind, tiled.activation, terms = self.layer, self.kind, self.activation, len(self.rows)
        tiled.rows = torch.arange(n, device=self.rows.device).repeat_interleave(terms)
        tiled.in_order = terms == 1
        tiled.weights, tiled.channels = self.weights.repeat(n), self.channels.repeat(n)
        tiled.positions = tuple(p.repeat(n) for p in self.positions)
        if self.kind == "direction":
            tiled.vectors = self.vectors.repeat(n, 1)
        return tiled

    def values_per_example(self, act):
        """float32 [N, terms]: every term of the group on each of the N images of ``act``. Channel
        and class terms take the mean over positions of every channel once, then pick (the same
        numbers as ``values``, without a copy of the activation per term); other kinds go through
        ``values`` on the tiled group."""
        if self.kind in ("channel", "class"):
            x = self.activation.channels_first(act)
            means = x.mean(dim=tuple(range(2, x.dim())), dtype=torch.float32) if x.dim() > 2 else x.float()
            return means[:, self.channels]
        return self.tiled(act.shape[0]).values(act).reshape(act.shape[0], len(self.rows))

    def _rows_of(self, x):
        """x[self.rows]; x itself when the rows are the whole batch in order (a deepdream zoom's one
        image, a layer objective per image): no copy of the activation, and no scatter of its
        gradient into zeros in the backward."""
        return x if self.in_order and x.shape[0] == len(self.rows) else x[self.rows]

    def values(self, act):
        x = self.activation.channels_first(act)
        if self.kind in ("channel", "class"):
            picked = x[self.rows, self.channels].float()
            return picked.reshape(len(self.rows), -1).mean(1)
        if self.kind == "neuron":
            return x[(self.rows, self.channels) + self.positions].float()
        picked = self._rows_of(x).float()
        if self.kind == "deepdream":  # not flattened: that copies a channels_last activation
            return picked.pow(2).mean(tuple(range(1, picked.dim())))
        vectors = self.vectors.reshape(self.vectors.shape + (1,) * (picked.dim() - 2))
        return (picked * vectors).sum(1).reshape(len(self.rows), -1).mean(1)


class ObjectivePlan:
    """Callable ``acts -> float32 [B]`` for a batch of units; built once per batch.

    units: list of Unit (one per image); shapes: {layer: Activation} (its shape and layout).
    """
    taps = {}  # every value is read from the activations after the forward (``goals.Goal.taps``)

    def __init__(self, units, shapes, device="cpu"):
        entries = {}
        for row, unit in enumerate(units):
            for term in unit.terms:
                check_term(term, unit, shapes[term.layer])
                entries.setdefault((term.layer, term.kind), []).append((row, term))
        self.batch = len(units)
        self.groups = [_Group(layer, kind, e, shapes[layer], device) for (layer, kind), e in entries.items()]
        self.layers = list(dict.fromkeys(g.layer for g in self.groups))

    def __call__(self, acts):
        device = next(iter(acts.values())).device
        total = torch.zeros(self.batch, dtype=torch.float32, device=device)
        for group in self.groups:
            total = total.index_add(0, group.rows, group.weights * group.values(acts[group.layer]))
        return total

    def per_example(self, acts):
        """float32 [N, U]: the objective of every unit of the plan on every one of the N images of
        ``acts`` (here the batch holds examples, not one image per unit)."""
        n = next(iter(acts.values())).shape[0]
        device = next(iter(acts.values())).device
        total = torch.zeros(n, self.batch, dtype=torch.float32, device=device)
        for group in self.groups:
            total = total.index_add(1, group.rows, group.weights * group.values_per_example(acts[group.layer]))
        return total
