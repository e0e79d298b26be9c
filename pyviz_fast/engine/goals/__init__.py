"""What the images of a render maximize: objective kinds behind one interface the render loop calls.

A *task* says what a render makes, one image per row:

- ``units``: one label per row (a ``Unit``, or what a row is, e.g. a content/style pair);
- ``keys``: one string per row; it seeds the row's random draws (``draws.unit_seed``), so a
  row's result depends on (model, key, settings, seed) only;
- ``group``: rows that must share a batch (a unit's facets), 1 if none;
- ``layers``: every layer the task's objectives read;
- ``bind(shapes)``: check the task against the layers' activation shapes ``{hw: {layer:
  shape}}`` (without batch) at every model-input size, the final last; may expand rows (a
  whole layer -> its channels);
- ``start(rows, hw, run) -> None | float [B, C, H, W]``: the images rows start from (a photo),
  None for the settings' own init;
- ``objective(rows, hw, crops, run) -> Goal``: the objective of rows ``rows`` (a slice) at
  model-input size ``hw`` with ``crops`` model inputs per image; ``run`` gives ``shapes[hw]``,
  ``device`` and ``reference(images, layers)``, a no-grad forward for targets such as a
  photo's activations.

A ``Goal`` is a callable ``acts -> (reported [B], optimized [B])``, float32: the main objective
(what the image is scored by, e.g. a unit's activation) and that plus every regularizer (what
the gradient ascends). Every kind computes one value per model input (row b*k + j is input j
of image b); the Goal averages an image's inputs. Its ``taps`` (``truncate.TruncatedForward``)
are what its objectives take inside the forward (the style loss's Gram errors): a forward
whose acts a Goal reads passes them.

>>> goal = Goal(ObjectivePlan(units, shapes), [Diversity(...)], crops=1)
>>> reported, optimized = goal(acts)
"""


class Goal:
    """``main`` (acts -> float32 [B*k]) plus ``extras`` (each ``(acts, main) -> float32 [B*k]``)."""

    def __init__(self, main, extras=(), crops=1):
        self.main, self.extras, self.crops = main, list(extras), crops
        self.layers = list(dict.fromkeys(list(main.layers) + [l for e in self.extras for l in e.layers]))
        self.taps = {}
        for part in [main, *self.extras]:
            for layer, tap in getattr(part, "taps", {}).items():
                if layer in self.taps:  # one tap value per layer: a second part's would replace the first's
                    raise ValueError(f"two parts of a goal tap layer {layer!r}; a layer's taps must come from one "
                                     f"part, chained there (truncate.chained)")
                self.taps[layer] = tap

    def __call__(self, acts):
        main = self.main(acts)
        total = main
        for extra in self.extras:
            total = total + extra(acts, main)
        return per_image(main, self.crops), per_image(total, self.crops)


class Optimized:
    """A Goal as a plain objective: acts -> its optimized value [B], with its ``layers`` (what
    autotune's trial and a benchmark's bare forward+backward ascend)."""

    def __init__(self, goal):
        self.goal, self.layers, self.taps = goal, goal.layers, goal.taps

    def __call__(self, acts):
        return self.goal(acts)[1]


def per_image(values, crops):
    """float [B*k] -> [B]: the mean over each image's k model inputs."""
    return values if crops == 1 else values.view(-1, crops).mean(1)


def repeat_rows(items, crops):
    """[a, b] -> [a, a, b, b] for crops=2: one entry per model input."""
    return [item for item in items for _ in range(crops)]


__all__ = ["Goal", "Optimized", "per_image", "repeat_rows"]
