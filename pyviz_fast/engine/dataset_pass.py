"""The dataset pass: ground every unit of an atlas in real images, in one streaming pass.

Per unit, over every example of a dataset: the top-K and bottom-K examples (index, activation,
the peak's position on a spatial unit's map and the receptive-field box around it), and
activation statistics (mean, std, min, max, quantiles). Then the unit's visualization is put
beside them: its own activation and that value's percentile among the dataset's, "dead on data"
(never active on any example) and the path similarity of Geirhos et al. ("Don't trust your
eyes"): at each atlas layer below the unit, the cosine similarity of the visualization's
activations (channel means) to those of the unit's top examples, next to its similarity to
random examples. A picture no closer to the top examples than to random ones reaches the unit
along a path natural images do not take.

How it runs: a DataLoader (with workers) feeds batches in dataset order; one truncated forward per
batch (``PreparedModel``: the render's precision, memory format and input normalization) serves
every layer; a unit's activation is the render's own objective, ``ObjectivePlan.per_example``
(never an index into a layer output of this module's own), so it is exactly the quantity the
visualization maximized. Running top-K, sums and kept values are a state of tensors handed to
``checkpoint(state)`` every ``checkpoint_seconds`` and on an interrupt; ``resume=state`` goes on
after the examples it covers. Per-example activations are all kept for quantiles and percentiles
while examples x units <= ``KEEP_VALUES``; beyond that an evenly strided subset of examples.

>>> data = load_dataset("shapes:2000", 64)
>>> grounding = dataset_pass(model, units, data, Settings(size=64), examples=8)
>>> grounding.top[0][0]          # unit 0's best example: {"index", "activation", "box"}
>>> signals = visualization_signals(model, units, images, data, grounding, Settings(size=64))
"""
import math
import time
from dataclasses import dataclass, field

import torch

from pyviz_fast.engine.execution import PreparedModel
from pyviz_fast.engine.layers import probe_activations
from pyviz_fast.engine.objectives import ObjectivePlan
from pyviz_fast.engine.units import parse_units

KEEP_VALUES = 20_000_000  # float32 per-example activations kept (80 MB)
QUANTILES = (0.01, 0.1, 0.5, 0.9, 0.99)
RANDOM_EXAMPLES = 32
STATE_VERSION = 1


@dataclass
class Grounding:
    """The pass's result for ``units`` (aligned lists). top/bottom[u]: best first, each
    {"index", "activation", "box" [x0, y0, x1, y1] or None}; stats[u]: mean, std, min, max, q01..q99,
    count; values: float32 [M, U] kept per-example activations; dead_on_data[u]: bool."""
    units: list
    top: list
    bottom: list
    stats: list
    values: torch.Tensor
    dead_on_data: list
    examples: int
    seconds: float = 0.0
    layers: list = field(default_factory=list)

    def percentile(self, u: int, value: float) -> float | None:
        """Percent of examples whose activation of unit u is below ``value`` (ties count half)."""
        column = self.values[:, u]
        if not column.numel() or value is None or not math.isfinite(value):
            return None
        below = (column < value).sum().item() + 0.5 * (column == value).sum().item()
        return 100.0 * below / column.numel()


def _loader(dataset, start, batch_size, workers):
    subset = torch.utils.data.Subset(dataset, range(start, len(dataset)))
    return torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=workers,
                                       persistent_workers=False, prefetch_factor=4 if workers else None)


class _Peaks:
    """Where a batch's activation of a unit peaks: the (y, x) of the largest (or smallest) value of a
    single-term channel unit's [C, H, W] map; (-1, -1) for other units (neuron units have a fixed
    position, vectors and tokens none). Asked only for the examples that enter a top/bottom list."""

    def __init__(self, units, shapes):
        self.layers, layer_ids, channels = [], [], []
        for unit in units:
            term = unit.terms[0]
            spatial = len(unit.terms) == 1 and term.kind == "channel" and _is_map(shapes[term.layer])
            if spatial and term.layer not in self.layers:
                self.layers.append(term.layer)
            layer_ids.append(self.layers.index(term.layer) if spatial else -1)
            channels.append(term.index if spatial else 0)
        self.layer_id, self.channel = torch.tensor(layer_ids), torch.tensor(channels)
        self.shapes, self.acts = shapes, {}

    def __call__(self, units, rows, largest: bool):
        """long [P, 2]: the peak of unit units[p] in batch row rows[p]."""
        out = torch.full((len(units), 2), -1, dtype=torch.long)
        ids = self.layer_id[units]
        for k, layer in enumerate(self.layers):
            where = (ids == k).nonzero().flatten()
            if not len(where):
                continue
            maps = self.shapes[layer].channels_first(self.acts[layer])  # the engine's own layout view
            picked = maps[rows[where].to(maps.device), self.channel[units[where]].to(maps.device)]
            flat = picked.float().flatten(1)
            best = (flat.argmax(1) if largest else flat.argmin(1)).cpu()
            out[where] = torch.stack([best // maps.shape[-1], best % maps.shape[-1]], 1)
        return out


class _Running:
    """Running top/bottom-K (values, example indices, peak positions) and moments, per unit."""

    def __init__(self, units: int, k: int, keep_stride: int, state: dict | None = None):
        if state is not None:
            self.__dict__.update({key: value for key, value in state.items() if key != "version"})
            return
        self.done, self.keep_stride = 0, keep_stride
        self.top_value = torch.full((units, k), -math.inf)
        self.bottom_value = torch.full((units, k), math.inf)
        self.top_index = torch.full((units, k), -1, dtype=torch.long)
        self.bottom_index = torch.full((units, k), -1, dtype=torch.long)
        self.top_pos = torch.full((units, k, 2), -1, dtype=torch.long)
        self.bottom_pos = torch.full((units, k, 2), -1, dtype=torch.long)
        self.total = torch.zeros(units, dtype=torch.float64)
        self.squares = torch.zeros(units, dtype=torch.float64)
        self.low = torch.full((units,), math.inf)
        self.high = torch.full((units,), -math.inf)
        self.kept = []

    def state(self) -> dict:
        return {"version": STATE_VERSION, **{key: value for key, value in self.__dict__.items()}}

    @staticmethod
    def _merge(best, index, pos, values, batch_index, largest, locate):
        """The K best of the running list and the batch (values [B, U]); peaks located for newcomers only."""
        k = best.shape[1]
        candidates = torch.cat([best, values.T], 1)
        chosen = candidates.topk(k, dim=1, largest=largest).indices
        new_index = torch.cat([index, batch_index.expand(values.shape[1], -1)], 1).gather(1, chosen)
        old = chosen < k
        new_pos = pos.gather(1, chosen.clamp(max=k - 1)[..., None].expand(-1, -1, 2))
        fresh = (~old).nonzero()
        if len(fresh):
            new_pos[fresh[:, 0], fresh[:, 1]] = locate(fresh[:, 0], chosen[fresh[:, 0], fresh[:, 1]] - k, largest)
        return candidates.gather(1, chosen), new_index, new_pos

    def update(self, values, index, locate):
        """values float32 [B, U]; index long [B] (dataset indices); locate: a ``_Peaks`` of the batch."""
        self.top_value, self.top_index, self.top_pos = self._merge(
            self.top_value, self.top_index, self.top_pos, values, index[None], True, locate)
        self.bottom_value, self.bottom_index, self.bottom_pos = self._merge(
            self.bottom_value, self.bottom_index, self.bottom_pos, values, index[None], False, locate)
        finite = torch.nan_to_num(values.double(), nan=0.0, posinf=0.0, neginf=0.0)
        self.total += finite.sum(0)
        self.squares += finite.pow(2).sum(0)
        self.low = torch.minimum(self.low, values.min(0).values)
        self.high = torch.maximum(self.high, values.max(0).values)
        keep = index % self.keep_stride == 0
        if keep.any():
            self.kept.append(values[keep].clone())
        self.done += len(index)


def _is_map(activation) -> bool:
    return activation.layout in ("nchw", "nhwc")


def _probe(prepared, layers, channels, hw, settings):
    """{layer: Activation} at ``hw``: shapes and layouts learned as the render learns them."""
    return probe_activations(prepared, layers, channels, [tuple(hw)], settings.layout)[tuple(hw)]


def receptive_fields(prepared, layers, shapes, channels, hw):
    """{layer: (stride_y, stride_x, y0, x0, y1, x1)}: the input pixels that reach the center of a
    [C, H, W] layer's map (support of the input gradient of all channels there), as offsets from
    the center position mapped to the input; shifted by the stride for other positions."""
    fields = {}
    conv = [layer for layer in layers if _is_map(shapes[layer])]
    if not conv:
        return fields
    x = torch.rand((1, channels) + tuple(hw), generator=torch.Generator().manual_seed(0))
    x = x.to(prepared.device).requires_grad_(True)
    with torch.enable_grad():
        acts = prepared(x, conv)  # one forward; one backward per layer
        for k, layer in enumerate(conv):
            act = shapes[layer].channels_first(acts[layer])
            cy, cx = act.shape[-2] // 2, act.shape[-1] // 2
            (grad,) = torch.autograd.grad(act[0, :, cy, cx].float().sum(), x, retain_graph=k < len(conv) - 1)
            support = grad.detach().abs().sum((0, 1)).cpu()
            rows, cols = support.sum(1).nonzero().flatten(), support.sum(0).nonzero().flatten()
            grid = shapes[layer].positions
            sy, sx = hw[0] / grid[0], hw[1] / grid[1]
            if not len(rows) or not len(cols):
                rows, cols = torch.tensor([0, hw[0] - 1]), torch.tensor([0, hw[1] - 1])
            centre_y, centre_x = (cy + 0.5) * sy, (cx + 0.5) * sx
            fields[layer] = (sy, sx, rows.min().item() - centre_y, cols.min().item() - centre_x,
                             rows.max().item() + 1 - centre_y, cols.max().item() + 1 - centre_x)
    return fields


def _box(field_, position, hw):
    """[x0, y0, x1, y1] (pixels, end exclusive) of the receptive field at map ``position``."""
    if field_ is None or position[0] < 0:
        return None
    sy, sx, y0, x0, y1, x1 = field_
    cy, cx = (position[0] + 0.5) * sy, (position[1] + 0.5) * sx
    return [max(0, math.floor(cx + x0)), max(0, math.floor(cy + y0)),
            min(hw[1], math.ceil(cx + x1)), min(hw[0], math.ceil(cy + y1))]


def _neuron_position(unit, shapes):
    term = unit.terms[0]
    if len(unit.terms) != 1 or term.kind != "neuron" or not _is_map(shapes[term.layer]):
        return None
    grid = shapes[term.layer].positions
    return tuple(term.position) if term.position is not None else (grid[0] // 2, grid[1] // 2)


def _prepare(model, units, settings, device):
    """(units parsed and checked against the model, the model readied as for rendering)."""
    return parse_units(units, model=model), PreparedModel(model, settings, device)


@torch.inference_mode(False)  # a caller's inference mode: autograd could not find the receptive fields
def dataset_pass(model, units, dataset, settings, *, examples: int = 8, device="cpu", batch_size: int = 64,
                 workers: int = 2, resume: dict | None = None, checkpoint=None, checkpoint_seconds: float = 30.0,
                 progress=None) -> Grounding:
    """Stream ``dataset`` (items: image [C, H, W], label, index) once through ``model`` and ground
    every unit (see the module docstring). ``checkpoint(state)`` receives the resumable state;
    ``progress`` is an object with update(n) (e.g. tqdm) or None. KeyboardInterrupt checkpoints first."""
    if examples < 1:
        raise ValueError(f"examples must be >= 1, got {examples}")
    units, prepared = _prepare(model, units, settings, device)
    started = time.perf_counter()
    layers = list(dict.fromkeys(layer for unit in units for layer in unit.layers))
    sample, _, _ = dataset[0]
    hw = tuple(sample.shape[-2:])
    count = len(dataset)
    stride = max(1, math.ceil(count * len(units) / KEEP_VALUES))
    with prepared:
        prepared.check_channels(sample.shape[0])
        shapes = _probe(prepared, layers, sample.shape[0], hw, settings)
        plan = ObjectivePlan(units, shapes, prepared.device)
        peaks = _Peaks(units, shapes)
        fields = receptive_fields(prepared, layers, shapes, sample.shape[0], hw)
        running = _Running(len(units), examples, stride, resume)
        if progress is not None and running.done:
            progress.update(running.done)
        last_checkpoint = time.monotonic()
        try:
            for images, _, index in _loader(dataset, running.done, batch_size, workers):
                with torch.no_grad():
                    peaks.acts = prepared(images.to(prepared.device, non_blocking=True), plan.layers)
                    running.update(plan.per_example(peaks.acts).cpu(), index, peaks)
                peaks.acts = {}
                if progress is not None:
                    progress.update(len(index))
                if checkpoint is not None and time.monotonic() - last_checkpoint >= checkpoint_seconds:
                    checkpoint(running.state())
                    last_checkpoint = time.monotonic()
        except KeyboardInterrupt:
            if checkpoint is not None:
                checkpoint(running.state())
            raise
    if checkpoint is not None:
        checkpoint(running.state())
    return _result(units, running, fields, shapes, hw, time.perf_counter() - started, model_order(model, layers))


def model_order(model, layers):
    """``layers`` in the model's module order (its definition order: the call order of sequential
    models and of torchvision's), ``output`` last: what "a layer below the unit" means here."""
    position = {name: k for k, (name, _) in enumerate(model.named_modules())}
    return sorted(layers, key=lambda layer: position.get(layer, len(position)))


def _result(units, running, fields, shapes, hw, seconds, layers) -> Grounding:
    kept = torch.cat(running.kept) if running.kept else torch.zeros(0, len(units))
    n = max(running.done, 1)
    mean = running.total / n
    std = (running.squares / n - mean.pow(2)).clamp(min=0).sqrt()
    quantiles = torch.quantile(kept.double(), torch.tensor(QUANTILES, dtype=torch.float64), dim=0) \
        if kept.shape[0] else torch.full((len(QUANTILES), len(units)), math.nan, dtype=torch.float64)
    top, bottom, stats, dead = [], [], [], []
    for u, unit in enumerate(units):
        field_ = fields.get(unit.layer)
        fixed = _neuron_position(unit, shapes)

        def listing(values, indices, positions):
            out = []
            for value, index, position in zip(values.tolist(), indices.tolist(), positions.tolist()):
                if index >= 0:
                    out.append({"index": index, "activation": value,
                                "box": _box(field_, fixed or position, hw) if field_ else None})
            return out

        top.append(listing(running.top_value[u], running.top_index[u], running.top_pos[u]))
        bottom.append(listing(running.bottom_value[u], running.bottom_index[u], running.bottom_pos[u]))
        low, high = running.low[u].item(), running.high[u].item()
        stats.append({"count": running.done, "mean": mean[u].item(), "std": std[u].item(), "min": low, "max": high,
                      **{f"q{round(q * 100):02d}": quantiles[k, u].item() for k, q in enumerate(QUANTILES)}})
        dead.append(bool(high <= 0 or high - low <= 1e-6 * (1 + abs(high))))
    return Grounding([str(u) for u in units], top, bottom, stats, kept, dead, running.done, seconds, layers)


def load_examples(dataset, indices, batch_size=64, workers=2):
    """Yield (indices, labels, images [B, C, H, W]) for the given dataset indices (in that order)."""
    subset = torch.utils.data.Subset(dataset, list(indices))
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=workers)
    for images, labels, index in loader:
        yield index.tolist(), labels.tolist(), images


def _descriptors(acts, shapes):
    """{layer: float32 [B, C]}: each image's channel means (over positions or tokens) at every
    captured layer: the path an image takes through the network."""
    return {layer: shapes[layer].channels_first(act).float().flatten(2).mean(2).cpu() if act.dim() > 2
            else act.float().cpu() for layer, act in acts.items()}


def visualization_signals(model, units, images, dataset, grounding: Grounding, settings, *, device="cpu",
                          batch_size=64, workers=2, on_examples=None) -> list[dict]:
    """Per unit (aligned with ``units``): the visualization's own activation, its percentile among the
    dataset's activations, and the path similarity at each atlas layer below the unit.

    images: float32 [U, C, H, W] in [0, 1], the units' visualizations (the dataset's size).
    on_examples(indices, labels, images): called with the top/bottom (and random) examples, e.g. to save crops.
    Returns [{"visualization_activation", "percentile", "path_similarity": [{"layer", "top", "random"}]}]."""
    units, prepared = _prepare(model, units, settings, device)
    layers = grounding.layers
    with prepared:
        shapes = _probe(prepared, layers, images.shape[1], images.shape[-2:], settings)
        own, vis_desc = [], {layer: [] for layer in layers}
        for start in range(0, len(units), batch_size):
            batch = images[start:start + batch_size]
            plan = ObjectivePlan(units[start:start + batch_size], shapes, prepared.device)
            with torch.no_grad():
                acts = prepared(batch.to(prepared.device), layers)
                own += plan(acts).cpu().tolist()
            for layer, desc in _descriptors(acts, shapes).items():
                vis_desc[layer].append(desc)
        vis_desc = {layer: torch.cat(parts) for layer, parts in vis_desc.items()}
        wanted = sorted({e["index"] for lists in (grounding.top, grounding.bottom) for ex in lists for e in ex})
        generator = torch.Generator().manual_seed(0)
        randoms = torch.randperm(grounding.examples, generator=generator)[:RANDOM_EXAMPLES].tolist()
        example_desc = {}
        for indices, labels, batch in load_examples(dataset, sorted(set(wanted) | set(randoms)), batch_size, workers):
            if on_examples is not None:
                on_examples(indices, labels, batch)
            with torch.no_grad():
                acts = prepared(batch.to(prepared.device), layers)
            for layer, desc in _descriptors(acts, shapes).items():
                for k, index in enumerate(indices):
                    example_desc.setdefault(index, {})[layer] = desc[k]
    order = {layer: k for k, layer in enumerate(layers)}
    signals = []
    for u, unit in enumerate(units):
        below = [layer for layer in layers if order[layer] < order[unit.layer]]
        top = [e["index"] for e in grounding.top[u]]
        similarity = []
        for layer in below:
            mine = vis_desc[layer][u]

            def mean_cosine(indices):
                if not indices:
                    return None
                stacked = torch.stack([example_desc[i][layer] for i in indices])
                return torch.nn.functional.cosine_similarity(stacked, mine[None], dim=1).mean().item()

            similarity.append({"layer": layer, "top": mean_cosine(top), "random": mean_cosine(randoms)})
        signals.append({"visualization_activation": own[u], "percentile": grounding.percentile(u, own[u]),
                        "path_similarity": similarity})
    return signals



class DatasetGrounder:
    """A model, its render settings and a dataset, bound for an atlas run (``AtlasJob.grounder``):
    the audit calls ``run_pass`` and ``signals`` without knowing the engine.

    >>> grounder = DatasetGrounder(model, settings, "shapes:2000", examples=8)
    """

    def __init__(self, model, settings, spec: str, *, examples: int = 8, device="cpu", batch_size: int = 64,
                 workers: int = 2, seed: int = 0):
        from pyviz_fast.engine.datasets import load_dataset
        self.model, self.settings, self.spec, self.examples = model, settings, spec, examples
        self.device, self.batch_size, self.workers = device, batch_size, workers
        self.dataset = load_dataset(spec, settings.hw[0], seed)
        self.key = {"dataset": spec, "examples": examples, "size": list(settings.hw), "count": len(self.dataset)}

    def adopt(self, execution: dict | None) -> None:
        """Run with the execution an atlas recorded in run.json (precision, memory format, compile), as
        its render batches do; None (no record) keeps the settings' own."""
        if execution:
            from pyviz_fast.engine.autotune import Decision
            chosen = Decision.from_record(execution).settings()
            chosen.pop("batch_size", None)  # the pass batches examples, not units
            self.settings = self.settings.replace(**chosen)

    def label_name(self, label: int):
        """The class name of ``label`` (or the number itself), None for no label."""
        if label < 0:
            return None
        classes = self.dataset.classes
        return classes[label] if classes and label < len(classes) else label

    def source(self, index: int):
        return self.dataset.source(index)

    def run_pass(self, units, *, resume=None, checkpoint=None, progress=None) -> Grounding:
        return dataset_pass(self.model, units, self.dataset, self.settings, examples=self.examples,
                            device=self.device, batch_size=self.batch_size, workers=self.workers,
                            resume=resume, checkpoint=checkpoint, progress=progress)

    def signals(self, units, images, grounding: Grounding, *, on_examples=None) -> list[dict]:
        return visualization_signals(self.model, units, images, self.dataset, grounding, self.settings,
                                     device=self.device, batch_size=self.batch_size, workers=self.workers,
                                     on_examples=on_examples)
