"""Scores every tool's final images the same way: the target channel's mean activation.

Each tool reports its own loss on its own transformed input (Lucent on a jittered, rotated,
224 px upsample; torch-dreams on a random affine crop; pyviz_fast on a jittered image), so
their numbers cannot be compared. This module, deliberately independent of the render engine
it helps to benchmark, feeds the final [0, 1] images as they are (no transform, native size)
through the model, normalized as the model expects, and reads channel ``c_i`` of ``layer`` for
image ``i``.

>>> model = torchvision.models.googlenet(weights=None, init_weights=True).eval()
>>> channel_objective(model, "inception4a", [0, 1], torch.rand(2, 3, 128, 128), IMAGENET).shape
torch.Size([2])
"""
import torch

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision models' (mean, std)
IDENTITY = None  # models that normalize inside themselves (the shipped ShapesNet)


class _Reached(Exception):
    """Raised by the hook once the target layer ran: nothing after it needs computing."""


def layer_output(model, layer: str, inputs: torch.Tensor) -> torch.Tensor:
    """Output of module ``layer`` (a ``named_modules`` name) for ``inputs``, stopping there."""
    module = dict(model.named_modules()).get(layer)
    if module is None:
        raise ValueError(f"layer {layer!r} is not a module of {type(model).__name__}")
    captured = []

    def hook(_module, _inputs, output):
        captured.append(output)
        raise _Reached

    handle = module.register_forward_hook(hook)
    try:
        model(inputs)
    except _Reached:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"layer {layer!r} did not run in the forward pass")
    return captured[0]


@torch.no_grad()
def channel_objective(model, layer, channels, images, normalization=IDENTITY, batch_size=32):
    """float32 [N]: mean over space of channel ``channels[i]`` of ``layer`` on ``images[i]``.

    images: [N, C, H, W] in [0, 1] on the model's device; normalization: (mean, std) per input
    channel, or None when the model normalizes its input itself.
    """
    channels = torch.as_tensor(list(channels), dtype=torch.long)
    if channels.numel() != images.shape[0]:
        raise ValueError(f"channels must give one channel per image: {channels.numel()} channels "
                         f"for {images.shape[0]} images")
    values = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].float()
        if normalization is not None:
            mean, std = (torch.tensor(v, device=x.device).view(1, -1, 1, 1) for v in normalization)
            x = (x - mean) / std
        out = layer_output(model, layer, x).float()
        picked = out[torch.arange(out.shape[0]), channels[start:start + batch_size].to(out.device)]
        values.append(picked.flatten(1).mean(dim=1).cpu())
    return torch.cat(values)
