"""Model-based quality scores of class visualizations, as in the MaCo paper (Fel et al. 2023).

``quality`` measures images by themselves (spectra, colors); this module asks models about
them, using the zoo's three architectures that know the same classes:

- ``transferability``: are one model's class visualizations recognised as their class by
  other models (each judge's argmax)? Adversarial noise does not transfer; a real pattern does.
- ``robust_recognition``: does the model still give p >= threshold for the class after a
  random shift and crop (``quality.random_shift_and_crop``)?
- ``plausibility``: cosine similarity, in a model's penultimate layer (the input of its final
  classifier), between each visualization and the mean of real images of its class.
- ``frechet_distance`` / ``kernel_inception_distance``: FID and KID between visualizations
  and real images in a model's penultimate features. KID (the unbiased MMD with a cubic
  polynomial kernel) is the one to trust with the small samples used here; FID is biased
  upward for small samples, so compare FIDs only at equal sample sizes.

Example::

    >>> from pyviz_fast import zoo
    >>> images, labels = zoo.make_batch(20, seed=0)
    >>> transferability(images, labels, [zoo.shapes_resnet(), zoo.shapes_vit()])
    1.0
"""
import torch
from torch import nn

from pyviz_fast.zoo.quality import random_shift_and_crop


def classifier_head(model):
    """The model's final classifier: the last ``nn.Linear`` it contains (fc, head)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier to take penultimate features from")
    return linears[-1]


@torch.no_grad()
def penultimate_features(model, images, batch_size=100):
    """What the model's classifier head receives for each image: float [N, D]."""
    captured = []
    handle = classifier_head(model).register_forward_pre_hook(lambda m, args: captured.append(args[0].float()))
    try:
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])
    finally:
        handle.remove()
    return torch.cat(captured).flatten(1)


@torch.no_grad()
def class_probabilities(model, images, labels):
    """Softmax probability of ``labels[i]`` for image i: [N]."""
    probs = torch.softmax(model(images).float(), dim=1)
    return probs[torch.arange(len(labels)), torch.as_tensor(labels)]


@torch.no_grad()
def transferability(images, labels, judges):
    """Fraction (float) of (image, judge) pairs where the judge's top class is the image's label."""
    labels = torch.as_tensor(labels)
    hits = [(judge(images).argmax(1) == labels).float().mean() for judge in judges]
    return float(torch.stack(hits).mean())


def robust_recognition(model, images, labels, seed=0, threshold=0.9, min_crop=0.8):
    """Per image (bool [N]): p(label) >= threshold after one random shift and crop."""
    moved = random_shift_and_crop(images, torch.Generator().manual_seed(seed), min_crop=min_crop)
    return class_probabilities(model, moved, labels) >= threshold


def plausibility(model, images, labels, real_images, real_labels):
    """Per image [N]: cosine similarity of its penultimate features to the mean features of the
    real images of its class (each class in ``labels`` needs real images)."""
    feats, real = penultimate_features(model, images), penultimate_features(model, real_images)
    real_labels = torch.as_tensor(real_labels)
    labels = torch.as_tensor(labels)
    missing = sorted(set(labels.tolist()) - set(real_labels.tolist()))
    if missing:
        raise ValueError(f"no real images of class(es) {missing} to compare with")
    centers = torch.stack([real[real_labels == c].mean(0) for c in labels.tolist()])
    return torch.nn.functional.cosine_similarity(feats, centers, dim=1)


def frechet_distance(features_a, features_b):
    """FID between two feature sets [Na, D], [Nb, D]: |mu_a - mu_b|^2 + Tr(Sa + Sb - 2 (Sa Sb)^1/2)."""
    a, b = features_a.double(), features_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    # Tr((Sa Sb)^1/2) = sum of sqrt of the eigenvalues of Sa^1/2 Sb Sa^1/2 (symmetric PSD).
    vals, vecs = torch.linalg.eigh(cov_a)
    root_a = (vecs * vals.clamp_min(0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def kernel_inception_distance(features_a, features_b):
    """KID: unbiased squared MMD with the kernel (x.y / D + 1)^3 between [Na, D] and [Nb, D] (Na, Nb >= 2).

    Both sets are first divided by the RMS feature value of ``features_b`` (the reference set):
    the kernel assumes features of order 1, as Inception's are, and the zoo models' are not.
    """
    a, b = features_a.double(), features_b.double()
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"KID needs >= 2 samples per set; got {len(a)} and {len(b)}")
    scale = b.square().mean().sqrt().clamp_min(1e-12)
    a, b = a / scale, b / scale
    d = a.shape[1]

    def kernel(x, y):
        return (x @ y.T / d + 1) ** 3

    kaa, kbb, kab = kernel(a, a), kernel(b, b), kernel(a, b)
    na, nb = len(a), len(b)
    within_a = (kaa.sum() - kaa.diagonal().sum()) / (na * (na - 1))
    within_b = (kbb.sum() - kbb.diagonal().sum()) / (nb * (nb - 1))
    return float(within_a + within_b - 2 * kab.mean())


def scorecard(images, labels, model, judges, real_images, real_labels, seed=0):
    """Every score of one set of class visualizations of ``model``, as a dict of floats:

    self_p (mean p(label) under ``model``), robust (fraction keeping p >= 0.9 after a random
    shift and crop), transfer (``transferability`` to ``judges``), and, averaged over the
    judges' feature spaces (a model is no fair referee of its own images), plausibility (mean
    cosine to the real class mean; ``real_plausibility`` is the same figure for the real
    images themselves, the ceiling), fid and kid against the real images.
    """
    labels = torch.as_tensor(labels)
    row = {"self_p": float(class_probabilities(model, images, labels).mean()),
           "robust": float(robust_recognition(model, images, labels, seed=seed).float().mean()),
           "transfer": transferability(images, labels, judges)}
    per_judge = []
    for judge in judges:
        feats, real = penultimate_features(judge, images), penultimate_features(judge, real_images)
        per_judge.append({
            "plausibility": float(plausibility(judge, images, labels, real_images, real_labels).mean()),
            "real_plausibility": float(plausibility(judge, real_images, real_labels, real_images, real_labels).mean()),
            "fid": frechet_distance(feats, real), "kid": kernel_inception_distance(feats, real)})
    for key in per_judge[0]:
        row[key] = sum(scores[key] for scores in per_judge) / len(per_judge)
    return row
