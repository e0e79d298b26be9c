"""Training-time augmentations that make a zoo model robust to what visualizations feed it.

Feature visualizations show a model images unlike its training data: MaCo's keep a natural
spectrum's energy at every frequency whatever the unit, so they always carry noise-like texture
beside the pattern. A model that reads a class into such texture (ShapesViT read it as rings)
scores visualizations by their noise, and its own are noise to other models. ``Augment`` holds
the remedies a recipe may turn on, applied to every fresh training batch by ``augment_batch``:

- ``textures``: that fraction of the batch is replaced by random-phase textures with the batch's
  mean spectrum magnitude (the texture MaCo starts from) with
  a uniform target over the classes, "no class";
- ``blend``: that fraction of the remaining images is mixed with a phase-scrambled texture,
  ``(1 - a) * image + a * texture`` with ``a`` uniform in ``[0, blend_max]``, keeping its label;
- ``fgsm_eps``: FGSM with a random start (Wong et al. 2020, "Fast is better than free") at that
  L-inf radius: each image is replaced by a one-step adversarial version of itself.

All draws come from the training run's generator, so a run stays reproducible for its seed.
"""
from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class Augment:
    textures: float = 0.0
    blend: float = 0.0
    blend_max: float = 0.5
    fgsm_eps: float = 0.0


def phase_scrambled(images, generator):
    """Random-phase textures with the batch's mean spectrum magnitude per channel (MaCo's
    'shapes' magnitude is such a dataset mean) and each image's mean color; clamped to [0, 1].
    The mean magnitude, not each image's own: an image's own magnitude with a random phase keeps
    its class (a stripe image's few frequencies scrambled are stripes again)."""
    spectrum = torch.fft.rfft2(images)
    magnitude = spectrum.abs().mean(0, keepdim=True).expand_as(spectrum).clone()
    magnitude[..., 0, 0] = spectrum[..., 0, 0].real  # each image keeps its own mean (DC)
    noise = torch.randn(images.shape[0], 1, *images.shape[2:], generator=generator)
    phase = torch.angle(torch.fft.rfft2(noise))  # white noise's phase: the result is real
    phase[..., 0, 0] = 0.0  # one phase for all channels: colors stay correlated
    return torch.fft.irfft2(torch.polar(magnitude, phase), s=images.shape[2:]).clamp(0, 1)


def augment_batch(images, labels, augment, generator, num_classes):
    """(images, targets) after the ``textures`` and ``blend`` augmentations (FGSM needs the
    model: ``adversarial``). Targets are the labels, or class probabilities [N, num_classes] once
    "no class" textures are in the batch. With nothing turned on, nothing is drawn: a recipe
    without augmentation trains exactly as before it existed."""
    n = len(images)
    targets = labels
    if augment.blend > 0:
        amount = augment.blend_max * torch.rand(n, 1, 1, 1, generator=generator)
        chosen = torch.rand(n, 1, 1, 1, generator=generator) < augment.blend
        texture = phase_scrambled(images, generator)
        images = torch.where(chosen, (1 - amount) * images + amount * texture, images)
    if augment.textures > 0:
        count = int(round(augment.textures * n))
        if count:
            images = images.clone()
            images[:count] = phase_scrambled(images, generator)[:count]  # the whole batch's mean spectrum
            targets = F.one_hot(labels, num_classes).float()
            targets[:count] = 1.0 / num_classes
    return images, targets


def adversarial(model, images, targets, eps, generator):
    """FGSM with a uniform random start in the L-inf ball of radius ``eps`` and a step of
    1.25 * eps, projected back to the ball and to [0, 1]; the model's gradients are left untouched."""
    delta = eps * (2 * torch.rand(images.shape, generator=generator) - 1)
    delta.requires_grad_(True)
    loss = F.cross_entropy(model(images + delta), targets)
    grad, = torch.autograd.grad(loss, delta)
    delta = (delta + 1.25 * eps * grad.sign()).clamp(-eps, eps)
    return (images + delta).clamp(0, 1).detach()
