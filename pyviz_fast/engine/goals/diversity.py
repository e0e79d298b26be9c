"""The diversity penalty (Olah et al. 2017; Lucid's ``diversity``): a unit's facets pushed apart.

The N facets of a unit are N consecutive images of a batch. Each model input's penalty is the
mean cosine similarity of its Gram matrix (at ``layer``) with those of the same crop of the
unit's other facets; it is scaled by the facets' mean |objective| (no gradient through the
scale), so ``weight`` means "how hard, relative to the unit itself" on any model.

Two departures from Lucid's symmetric penalty keep every facet a good image of its unit:

- a facet moves away from its siblings as they are (their Gram matrices are constants in its
  penalty), so a facet is never pushed by the others' penalties;
- a facet pushes only while its objective is near the unit's best facet: the push is full at
  >= 100 %, fades linearly and stops at ``floor`` x the best facet (and for a facet that does not
  fire), so a facet that is losing the unit climbs back instead of being pushed further off.

On ShapesNet conv4 and ShapesResNet layer4 (samples of 12 units, BENCHMARKS.md) the symmetric
penalty left 9 / 3 / 4 of 12 units with every facet at >= 80 % of the unit's single image; with
both departures 12 / 11 / 12 (the twelfth unit's seeds other than its own never fire, diversity or
not), at a spread of 2.3-2.7x that of independent seeds.

>>> extra = Diversity("conv2", run.shapes[hw]["conv2"], facets=4, crops=1, weight=1.25, floor=0.85,
...                   inputs=torch.arange(8))
>>> penalty = extra(acts, main)     # float32 [B*k], <= 0 on ``inputs`` (whole facet groups), 0 elsewhere

``inputs=None`` means every model input of the batch, in order: the activation is then read as it
is (no gather of its rows, no scatter of their gradient into zeros, and the Gram matrix's
gradient keeps the activation's memory layout).
"""
import torch
import torch.nn.functional as F

from pyviz_fast.engine.goals.gram import gram, sibling_similarity
from pyviz_fast.engine.models import input_patch
from pyviz_fast.engine.parameterizations import check as check_parameterization

# On a model that cuts its input into patches (a ViT) facets default to the Fourier
# parameterization: pixel facets lose the unit to the penalty there. shapes_vit, 12 MLP units at
# 64 px and 128 steps, every facet >= 80 % of the same seed's image without diversity: pixel 6 of
# 12 units, Fourier 12 of 12 (BENCHMARKS.md, "Facets and accentuation").
PATCH_MODEL_FACET_DEFAULTS = dict(param="fourier")


def with_facet_defaults(settings, model, param_given):
    """``settings`` with ``PATCH_MODEL_FACET_DEFAULTS`` when they ask for facets of a model that
    cuts its input into patches, the caller did not choose ``param``, and Fourier can serve them
    (it works at one size and makes its own start: octaves, a canvas or an init image keep pixels)."""
    if param_given or settings.facets <= 1 or input_patch(model) <= 1:
        return settings
    fourier = settings.replace(**PATCH_MODEL_FACET_DEFAULTS)
    try:
        check_parameterization(fourier)
    except ValueError:
        return settings
    return fourier


class Diversity:
    def __init__(self, layer, activation, facets, crops, weight, floor, inputs, backend=None):
        self.layers, self.activation, self.backend = [layer], activation, backend
        self.facets, self.crops, self.weight, self.floor, self.inputs = facets, crops, weight, floor, inputs

    def __call__(self, acts, main):
        n, k = self.facets, self.crops
        act, scores = acts[self.layers[0]], main.detach()
        if self.inputs is not None:
            act, scores = act[self.inputs], scores[self.inputs]
        others = sibling_similarity(act, self.activation, n, k, self.backend).view(-1, n, k)
        scale = scores.abs().view(-1, n * k).mean(1)[:, None, None]  # per unit
        penalty = -(self.weight * scale * self._pushing(scores)[:, :, None] * others).reshape(-1)
        return penalty if self.inputs is None else torch.zeros_like(main).index_add(0, self.inputs, penalty)

    def _pushing(self, scores):
        """float [units, facets] in [0, 1]: how hard each facet pushes, from its objective over the best facet's."""
        facet = scores.view(-1, self.facets, self.crops).mean(2).clamp(min=0)
        of_best = facet / facet.amax(1, keepdim=True).clamp(min=torch.finfo(facet.dtype).tiny)
        return ((of_best - self.floor) / (1 - self.floor)).clamp(0, 1)


def mean_pairwise_gram_distance(acts, activation):
    """float: the mean over pairs of rows of 1 - cosine similarity of their Gram matrices."""
    grams = F.normalize(gram(acts, activation).flatten(1), dim=1)
    similarity = grams @ grams.T
    n = grams.shape[0]
    return float((1 - similarity).sum() / max(n * (n - 1), 1))
