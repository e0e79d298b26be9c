"""The task of ``render``: each image maximizes its unit (``objectives.ObjectivePlan``), optionally
as ``facets`` images per unit pushed apart by the diversity penalty.

A unit's facets are consecutive rows that always share a batch; facet 0 has the unit's own
seed key (so it starts like a plain render of the unit), facet f > 0 the key ``'<unit>#f'``.

>>> task = UnitTask(parse_units("conv3:0-3"), Settings(facets=2, diversity=0.5))
>>> task.bind(shapes); len(task.units)
8
"""
import torch

from pyviz_fast.engine.goals import Goal, repeat_rows
from pyviz_fast.engine.goals.diversity import Diversity
from pyviz_fast.engine.objectives import ObjectivePlan, check_term
from pyviz_fast.engine.units import expand_whole_layers


class UnitTask:
    def __init__(self, units, settings):
        self.facets, self.diversity_layer = settings.facets, settings.diversity_layer
        self.weight, self.floor = settings.diversity, settings.diversity_floor
        self.group = self.facets
        self.layers = list(dict.fromkeys([l for u in units for l in u.layers]
                                         + ([self.diversity_layer] if self.diversity_layer else [])))
        self._set_units(units)

    def _set_units(self, units):
        self.units = repeat_rows(units, self.facets)
        self.keys = [str(u) if f == 0 else f"{u}#{f}" for u in units for f in range(self.facets)]

    def bind(self, shapes):
        final = list(shapes.values())[-1]
        self._set_units(expand_whole_layers(self.units[::self.facets], final))
        for per_layer in shapes.values():
            for unit in self.units[::self.facets]:
                for term in unit.terms:
                    check_term(term, unit, per_layer[term.layer])

    def start(self, rows, hw, run):
        return None

    def objective(self, rows, hw, crops, run):
        units = self.units[rows]
        main = ObjectivePlan(repeat_rows(units, crops), run.shapes[hw], run.device)
        extras = []
        if self.facets > 1 and self.weight > 0:  # one penalty per layer the batch's Gram matrices are taken at
            inputs = {}
            for row, unit in enumerate(repeat_rows(units, crops)):
                inputs.setdefault(self.diversity_layer or unit.layer, []).append(row)
            every = list(range(len(units) * crops))
            extras = [Diversity(layer, run.shapes[hw][layer], self.facets, crops, self.weight, self.floor,
                                None if rows_ == every else torch.tensor(rows_, device=run.device), run.backend)
                      for layer, rows_ in inputs.items()]
        return Goal(main, extras, crops)
