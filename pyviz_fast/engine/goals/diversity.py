"""The diversity penalty (Olah et al. 2017; Lucid's ``diversity``): a unit's facets pushed apart.

The N facets of a unit are N consecutive images of a batch. Each model input's penalty is the
mean cosine similarity of its Gram matrix (at ``layer``) with those of the same crop of the
unit's other facets; it is scaled by the facets' mean |objective| (no gradient through the
scale), so ``weight`` means "how hard, relative to the unit itself" on any model.

>>> extra = Diversity("conv2", run.shapes[hw]["conv2"], facets=4, crops=1, weight=0.5, inputs=torch.arange(8))
>>> penalty = extra(acts, main)     # float32 [B*k], <= 0 on ``inputs`` (whole facet groups), 0 elsewhere

``inputs=None`` means every model input of the batch, in order: the activation is then read as it
is (no gather of its rows, no scatter of their gradient into zeros, and the Gram matrix's
gradient keeps the activation's memory layout).
"""
import torch
import torch.nn.functional as F

from pyviz_fast.engine.goals.gram import gram


class Diversity:
    def __init__(self, layer, activation, facets, crops, weight, inputs):
        self.layers, self.activation = [layer], activation
        self.facets, self.crops, self.weight, self.inputs = facets, crops, weight, inputs

    def __call__(self, acts, main):
        n, k = self.facets, self.crops
        act, scores = acts[self.layers[0]], main.detach()
        if self.inputs is not None:
            act, scores = act[self.inputs], scores[self.inputs]
        grams = F.normalize(gram(act, self.activation).flatten(1), dim=1)
        grams = grams.view(-1, n, k, grams.shape[-1])                       # [units, facets, crops, C*C]
        similarity = (grams.unsqueeze(2) * grams.unsqueeze(1)).sum(-1)      # [units, n, n, crops]
        others = (similarity.sum(2) - similarity.diagonal(dim1=1, dim2=2).transpose(1, 2)) / max(n - 1, 1)
        scale = scores.abs().view(-1, n * k).mean(1)[:, None, None]  # per unit
        penalty = -(self.weight * scale * others).reshape(-1)
        return penalty if self.inputs is None else torch.zeros_like(main).index_add(0, self.inputs, penalty)


def mean_pairwise_gram_distance(acts, activation):
    """float: the mean over pairs of rows of 1 - cosine similarity of their Gram matrices."""
    grams = F.normalize(gram(acts, activation).flatten(1), dim=1)
    similarity = grams @ grams.T
    n = grams.shape[0]
    return float((1 - similarity).sum() / max(n * (n - 1), 1))
