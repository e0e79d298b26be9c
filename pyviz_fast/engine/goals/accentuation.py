"""Feature accentuation (Hamblin et al. 2024) and Lucid's caricature: start from a photo.

- ``AccentuationTask``: each row maximizes its unit from the photo, while ``Closeness`` keeps
  the activations at a lower layer near the photo's: a penalty of ``weight`` times the relative
  squared error ||a(x) - a(photo)||^2 / ||a(photo)||^2, scaled by the row's |objective| (no
  gradient through the scale) so ``weight`` is relative to the unit on any model;
- ``Caricature``: maximize dot(a(x), a(photo)) * max(cos(a(x), a(photo)), 0.1)^power at a layer
  (Lucid's ``dot_compare``): what the layer sees in the photo, exaggerated.

>>> task = AccentuationTask(parse_units("conv4:3"), settings, photo, "conv2", weight=1.0)
"""

from pyviz_fast.engine.goals import Goal
from pyviz_fast.engine.goals.gram import squared_norms
from pyviz_fast.engine.goals.style import relative_error, resized
from pyviz_fast.engine.goals.units import UnitTask

MIN_COSINE = 0.1


def _photo_start(photo, rows, hw):
    """The photo at size hw, once per row of ``rows``."""
    return resized(photo[None], hw).expand(rows.stop - rows.start, -1, -1, -1).clone()


def _photo_acts(run, photo, hw, layer, rows):
    """The photo's activation at ``layer``, one copy per model input."""
    act = run.reference(resized(photo[None], hw), [layer])[layer].float()
    return act.expand(rows, *act.shape[1:])


class Closeness:
    def __init__(self, layer, target, weight):
        self.layers, self.target, self.weight = [layer], target, weight
        self.norms = squared_norms(target)  # once, not every step

    def __call__(self, acts, main):
        return -self.weight * main.detach().abs() * relative_error(acts[self.layers[0]], self.target, self.norms)


class AccentuationTask(UnitTask):
    def __init__(self, units, settings, photo, layer, weight):
        super().__init__(units, settings.replace(facets=1))
        self.photo, self.closeness_layer, self.weight = photo, layer, weight
        self.layers = list(dict.fromkeys(self.layers + [layer]))

    def start(self, rows, hw, run):
        return _photo_start(self.photo, rows, hw)

    def objective(self, rows, hw, crops, run):
        goal = super().objective(rows, hw, crops, run)
        if self.weight > 0:
            target = _photo_acts(run, self.photo, hw, self.closeness_layer, (rows.stop - rows.start) * crops)
            goal = Goal(goal.main, goal.extras + [Closeness(self.closeness_layer, target, self.weight)], crops)
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
        target = _photo_acts(run, self.photo, hw, self.layer, (rows.stop - rows.start) * crops)
        return Goal(Caricature(self.layer, target, self.power), [], crops)



