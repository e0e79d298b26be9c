"""The training augmentations that make a zoo model robust (pyviz_fast.zoo.augment)."""
import torch
from torch.nn import functional as F

from pyviz_fast.zoo import make_batch
from pyviz_fast.zoo.augment import Augment, adversarial, augment_batch, phase_scrambled


def test_phase_scrambled_has_the_batch_spectrum_and_no_layout():
    images, _ = make_batch(20, size=48, seed=0)
    scrambled = phase_scrambled(images, torch.Generator().manual_seed(0))
    assert scrambled.shape == images.shape and scrambled.min() >= 0 and scrambled.max() <= 1
    # the batch's mean magnitude (the clamp to [0, 1] trims a little), not each image's own
    mean_magnitude = torch.fft.rfft2(images).abs().mean(0)[..., 1:, 1:].flatten()
    kept = torch.fft.rfft2(scrambled).abs()[..., 1:, 1:].flatten(1)
    assert F.cosine_similarity(kept, mean_magnitude[None]).min() > 0.8
    assert torch.allclose(scrambled.mean((2, 3)), images.mean((2, 3)), atol=0.05)  # each image's mean color
    assert (scrambled - images).abs().mean() > 0.05  # the layout is gone
    again = phase_scrambled(images, torch.Generator().manual_seed(0))
    assert torch.equal(scrambled, again)


def test_nothing_turned_on_draws_nothing_and_keeps_the_labels():
    images, labels = make_batch(8, size=40, seed=1)
    generator = torch.Generator().manual_seed(5)
    out, targets = augment_batch(images, labels, Augment(), generator, 10)
    assert out is images and targets is labels
    assert torch.equal(torch.rand(3, generator=generator), torch.rand(3, generator=torch.Generator().manual_seed(5)))


def test_textures_get_the_uniform_target_and_blends_keep_their_label():
    images, labels = make_batch(10, size=40, seed=2)
    out, targets = augment_batch(images, labels, Augment(textures=0.3, blend=1.0), torch.Generator().manual_seed(0), 10)
    assert targets.shape == (10, 10) and torch.allclose(targets.sum(1), torch.ones(10))
    assert torch.allclose(targets[:3], torch.full((3, 10), 0.1))
    assert torch.equal(targets[3:].argmax(1), labels[3:]) and (targets[3:].max(1).values == 1).all()
    assert not torch.equal(out[3:], images[3:])  # every remaining image blended (blend=1.0)


def test_fgsm_stays_in_the_ball_and_raises_the_loss():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    torch.manual_seed(0)
    images, labels = make_batch(16, size=32, seed=3)
    eps = 4 / 255
    moved = adversarial(model, images, labels, eps, torch.Generator().manual_seed(0))
    assert (moved - images).abs().max() <= eps + 1e-6 and moved.min() >= 0 and moved.max() <= 1
    assert F.cross_entropy(model(moved), labels) > F.cross_entropy(model(images), labels)
    assert all(p.grad is None for p in model.parameters())
