"""Feature accentuation (Hamblin et al. 2024) and Lucid's caricature: start from a photo.

- ``AccentuationTask``: each row maximizes its unit from the photo, while ``Closeness`` keeps
  the activations at a lower layer near the photo's: a penalty of ``weight`` times the relative
  squared error ||a(x) - a(photo)||^2 / ||a(photo)||^2, scaled by the row's |objective| (no
  gradient through the scale) so ``weight`` is relative to the unit on any model. With a
  ``gain``, each row's weight follows its unit: ``weight * (r / gain)^4``, r the unit's objective
  over its value on the photo. Far below the gain the closeness barely holds, so the unit rises
  freely; past it the weight climbs steeply and holds the image near the photo, so the unit
  settles a little above gain times the photo's value on every photo. One fixed weight cannot do
  both: on ShapesNet the default 1.0 changed some photos beyond recognition (x13-19, layout
  gone) while 10 barely moved others (x1.1). A unit off on the photo (value <= 0) has no factor:
  its weight stays ``weight``.
- ``Caricature``: maximize dot(a(x), a(photo)) * max(cos(a(x), a(photo)), 0.1)^power at a layer
  (Lucid's ``dot_compare``): what the layer sees in the photo, exaggerated.

>>> task = AccentuationTask(parse_units("conv4:3"), settings, photo, "conv2", weight=1.0)
"""
import torch

from pyviz_fast.engine.goals import Goal
from pyviz_fast.engine.goals.gram import squared_norms
from pyviz_fast.engine.goals.style import relative_error, resized
from pyviz_fast.engine.goals.units import UnitTask

MIN_COSINE = 0.1
GAIN_POWER = 4  # 2 gave the same photos on ShapesNet with looser factors (BENCHMARKS.md, "Facets and accentuation")


def _photo_start(photo, rows, hw):
    """The photo at size hw, once per row of ``rows``."""
    return resized(photo[None], hw).expand(rows.stop - rows.start, -1, -1, -1).clone()


def _photo_acts(run, photo, hw, layers, rows):
    """{layer: the photo's activation there, one copy per model input}, from one forward."""
    acts = run.reference(resized(photo[None], hw), layers)
    return {layer: act.float().expand(rows, *act.shape[1:]) for layer, act in acts.items()}


class Closeness:
    """``(acts, main) -> float [B*k]``: minus the closeness penalty of each model input. gain: None
    (a fixed ``weight``) or the factor the weight is ``weight`` at, relative to ``photo_objective``
    (float [B*k], the unit on the photo)."""

    def __init__(self, layer, target, weight, gain=None, photo_objective=None):
        self.layers, self.target, self.weight = [layer], target, weight
        self.norms = squared_norms(target)  # once, not every step
        self.gain, self.photo_objective = gain, photo_objective

    def __call__(self, acts, main):
        main = main.detach()
        weight = self.weight if self.gain is None else self._weights(main)
        return -weight * main.abs() * relative_error(acts[self.layers[0]], self.target, self.norms)

    def _weights(self, main):
        factor = (main / self.photo_objective.clamp(min=1e-12)).clamp(min=0)
        steered = self.weight * (factor / self.gain) ** GAIN_POWER
        return torch.where(self.photo_objective > 0, steered, self.weight)


class AccentuationTask(UnitTask):
    def __init__(self, units, settings, photo, layer, weight, gain=None):
        super().__init__(units, settings.replace(facets=1))
        self.photo, self.closeness_layer, self.weight, self.gain = photo, layer, weight, gain
        self.layers = list(dict.fromkeys(self.layers + [layer]))

    def start(self, rows, hw, run):
        return _photo_start(self.photo, rows, hw)

    def objective(self, rows, hw, crops, run):
        goal = super().objective(rows, hw, crops, run)
        if self.weight > 0:
            steered = self.gain is not None  # then each unit on the photo itself is the reference of its gain
            layers = list(dict.fromkeys([self.closeness_layer, *(goal.main.layers if steered else [])]))
            photo = _photo_acts(run, self.photo, hw, layers, (rows.stop - rows.start) * crops)
            photo_objective = goal.main(photo).float() if steered else None
            closeness = Closeness(self.closeness_layer, photo[self.closeness_layer], self.weight, self.gain,
                                  photo_objective)
            goal = Goal(goal.main, goal.extras + [closeness], crops)
        return goal


class Caricature:
    def __init__(self, layer, target, power):
        self.layers, self.target, self.power = [layer], target.flatten(1), power

    def __call__(self, acts):
        x = acts[self.layers[0]].float().flatten(1)
        dot = (x * self.target).sum(1)
        cosine = dot / (x.norm(dim=1) * self.target.norm(dim=1)).clamp(min=1e-12)
        return dot * cosine.clamp(min=MIN_COSINE) ** self.power


class CaricatureTask:
    """One row: the caricature of ``photo`` at ``layer``."""

    def __init__(self, photo, layer, power):
        self.photo, self.layer, self.power = photo, layer, power
        self.units = [f"{layer}@caricature"]
        self.keys = list(self.units)
        self.group = 1
        self.layers = [layer]

    def bind(self, shapes):
        pass

    def start(self, rows, hw, run):
        return _photo_start(self.photo, rows, hw)

    def objective(self, rows, hw, crops, run):
        target = _photo_acts(run, self.photo, hw, [self.layer], (rows.stop - rows.start) * crops)[self.layer]
        return Goal(Caricature(self.layer, target, self.power), [], crops)



