"""Model specs and per-model input conventions.

Specs accepted by ``load_model``:

- ``"shapesnet"``: the package's own trained model (``pyviz_fast.zoo.shapesnet``);
- ``"torchvision:NAME"``: ``torchvision.models.get_model(NAME)`` with ``weights`` = ``"none"``
  (random init), ``"DEFAULT"`` (torchvision's download, the user's machine's business) or a path
  to a saved state dict;
- ``"timm:NAME"``: ``timm.create_model(NAME, pretrained=weights == "DEFAULT")`` when timm is
  installed (a path loads a state dict);
- a path ending in ``.pt``/``.pth``/``.ts``: a TorchScript file (``torch.jit.load``);
- ``"package.module:factory"``: ``factory()`` imported from that module.

Input convention: images live in [0, 1]; the engine feeds ``(x - mean) / std`` to the model.
``input_normalization(model)`` finds mean/std in this order: attributes ``input_mean`` /
``input_std`` on the model (``load_model`` sets them; the zoo models define them), timm's
``pretrained_cfg``, ImageNet statistics for torchvision classes, else identity (mean 0, std 1).
"""
import importlib
import os

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _load_state(model, path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist (weights must be DEFAULT, none or a path)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model.load_state_dict(state)
    return model


def _torchvision(name, weights):
    import torchvision

    if name not in torchvision.models.list_models():
        import difflib
        close = difflib.get_close_matches(name, torchvision.models.list_models(), n=5)
        raise ValueError(f"unknown torchvision model {name!r}" + (f"; closest: {', '.join(close)}" if close else ""))
    if weights.lower() == "default":
        return torchvision.models.get_model(name, weights="DEFAULT")
    model = torchvision.models.get_model(name, weights=None)
    return model if weights.lower() == "none" else _load_state(model, weights)


def _timm(name, weights):
    try:
        import timm
    except ImportError:
        raise ValueError(f"model spec 'timm:{name}' needs timm, which is not installed (pip install timm)") from None
    model = timm.create_model(name, pretrained=weights.lower() == "default")
    if weights.lower() not in ("none", "default"):
        _load_state(model, weights)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    model.input_mean, model.input_std = tuple(cfg.get("mean", (0, 0, 0))), tuple(cfg.get("std", (1, 1, 1)))
    return model


def _factory(spec, what="model"):
    """``factory()`` for a ``package.module:factory`` spec (of a model, or of a dataset)."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"{what} spec {spec!r}: cannot import module {module_name!r} ({error})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{what} spec {spec!r}: module {module_name!r} has no callable {attr!r}")
    return factory()


def load_model(spec="shapesnet", weights="none", device="cpu"):
    """Build a model from a spec string (see the module docstring); returns ``(model, info)``.

    The model is in eval mode on ``device``; ``info`` is a dict: spec, source, mean, std.

    >>> model, info = load_model("torchvision:googlenet", weights="none")
    >>> info["mean"]
    (0.485, 0.456, 0.406)
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"model spec must be a non-empty string, got {spec!r}")
    if spec == "shapesnet":
        from pyviz_fast import zoo
        model, source = zoo.shapesnet(), "pyviz_fast.zoo"
    elif spec.startswith("torchvision:"):
        model, source = _torchvision(spec.split(":", 1)[1], weights), "torchvision"
        model.input_mean, model.input_std = IMAGENET_MEAN, IMAGENET_STD
    elif spec.startswith("timm:"):
        model, source = _timm(spec.split(":", 1)[1], weights), "timm"
    elif spec.endswith((".pt", ".pth", ".ts")):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"model file {spec!r} does not exist")
        model, source = torch.jit.load(spec, map_location="cpu"), "torchscript"
    elif ":" in spec:
        model, source = _factory(spec), "factory"
    else:
        raise ValueError(f"unknown model spec {spec!r}; use shapesnet, torchvision:NAME, timm:NAME, "
                         "a TorchScript file (.pt) or package.module:factory")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model spec {spec!r} produced {type(model).__name__}, not a torch.nn.Module")
    model = model.eval().to(device)
    mean, std = input_normalization(model)
    return model, {"spec": spec, "source": source, "weights": weights, "mean": mean, "std": std}


def input_normalization(model):
    """(mean, std) tuples the model expects on [0, 1] images, or (None, None) for identity."""
    mean, std = getattr(model, "input_mean", None), getattr(model, "input_std", None)
    if mean is not None and std is not None:
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and "mean" in cfg and "std" in cfg:
        return tuple(cfg["mean"]), tuple(cfg["std"])
    if type(model).__module__.startswith("torchvision.models"):
        return IMAGENET_MEAN, IMAGENET_STD
    return None, None


def input_channels(model, default=3):
    """Channels the model's first convolution / patch embedding takes (``default`` if none found)."""
    for module in model.modules():
        channels = getattr(module, "in_channels", None)
        if isinstance(channels, int):
            return channels
    return default
