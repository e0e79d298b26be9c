"""Model specs and per-model input conventions.

Specs accepted by ``load_model``:

- ``"shapesnet"``, ``"shapes_resnet"``, ``"shapes_vit"``: the package's own trained models
  (``pyviz_fast.zoo``; ``shapesnet`` is the default);
- ``"torchvision:NAME"``: ``torchvision.models.get_model(NAME)`` with ``weights`` = ``"none"``
  or ``None`` (random init), ``"DEFAULT"`` (torchvision's download, the user's machine's business) or a path
  to a saved state dict;
- ``"timm:NAME"``: ``timm.create_model(NAME, pretrained=weights == "DEFAULT")`` when timm is
  installed (a path loads a state dict);
- a path ending in ``.pt``/``.pth``/``.ts``: a TorchScript file (``torch.jit.load``);
- ``"package.module:factory"``: ``factory()`` imported from that module.

For the zoo, TorchScript and factory specs, ``weights`` ``"none"``/``"DEFAULT"`` keep the
model's own weights and a path loads that state dict into the built model.

Random init is seeded: every model is built under ``torch.manual_seed(seed)`` (the global
random state is restored afterwards), so the same spec and seed give the same weights on the
same torch version. ``fingerprint(model)`` hashes the parameters and buffers; an atlas records
it and refuses to resume with a model whose fingerprint differs.

Input convention: images live in [0, 1]; the engine feeds ``(x - mean) / std`` to the model.
``input_normalization(model)`` finds mean/std in this order: attributes ``input_mean`` /
``input_std`` on the model (``load_model`` sets them; the zoo models define them), timm's
``pretrained_cfg``, ImageNet statistics for torchvision classes, else identity (mean 0, std 1).
"""
import hashlib
import importlib
import inspect
import os
import warnings

import torch

from pyviz_fast import zoo
from pyviz_fast.engine.draws import check_seed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _first_sentence(error) -> str:
    """The start of an error's message: torch's loading errors run on for a page."""
    line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {line.split('. ')[0].rstrip('.')[:160]}"


def _key_list(keys, limit=4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _read_state(path):
    """The tensors of a saved state dict (``{"state_dict": ...}`` checkpoints unwrapped), or ValueError."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist (weights must be DEFAULT, none or a path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (pickle, zip and torch errors all mean: not a state dict)
        raise ValueError(f"weights file {path!r} is not a PyTorch state dict ({_first_sentence(error)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {path!r} holds a {type(state).__name__}, not a state dict "
                         "(a mapping of parameter names to tensors)")
    return state


def _load_state(model, path):
    """Load the state dict at ``path`` into ``model``; a mismatch names the keys that do not fit."""
    state = _read_state(path)
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    shapes = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        problems = [f"{len(missing)} missing keys ({_key_list(missing)})" if missing else "",
                    f"{len(unexpected)} unexpected keys ({_key_list(unexpected)})" if unexpected else "",
                    f"{len(shapes)} keys of another shape (" + ", ".join(
                        f"{k} {list(state[k].shape)} vs {list(expected[k].shape)}" for k in shapes[:3])
                    + (", ..." if len(shapes) > 3 else "") + ")" if shapes else ""]
        raise ValueError(f"weights file {path!r} does not fit {type(model).__name__}: "
                         + "; ".join(p for p in problems if p))
    model.load_state_dict(state)
    return model


def _torchscript(path):
    """A TorchScript file; a plain state dict saved with torch.save gets a message saying what to do."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated")  # not the user's call
            return torch.jit.load(path, map_location="cpu")
    except Exception as error:  # noqa: BLE001  (torch reports any non-TorchScript file as corrupted)
        try:
            _read_state(path)
        except ValueError:
            raise ValueError(f"model file {path!r} is not a TorchScript file "
                             f"({_first_sentence(error)})") from None
        raise ValueError(f"{path!r} is a state dict (weights without the architecture); pass the architecture "
                         f"as the model (e.g. --model torchvision:resnet18) and this file as its weights "
                         f"(--weights {path})") from None


def class_names(model):
    """The model's class names in output order, or None: ``model.class_names`` (the zoo's models
    and ``load_model`` set it: torchvision's weights metadata 'categories'; the CLI's --labels)."""
    names = getattr(model, "class_names", None)
    return tuple(str(n) for n in names) if names else None


def _torchvision_categories(name):
    """ImageNet (or other) class names from torchvision's weights metadata, when it has them."""
    import torchvision
    try:
        return tuple(torchvision.models.get_model_weights(name).DEFAULT.meta.get("categories") or ()) or None
    except (ValueError, AttributeError, KeyError):
        return None


def _torchvision(name, weights):
    import torchvision

    if name not in torchvision.models.list_models():
        import difflib
        close = difflib.get_close_matches(name, torchvision.models.list_models(), n=5)
        raise ValueError(f"unknown torchvision model {name!r}" + (f"; closest: {', '.join(close)}" if close else ""))
    if weights.lower() == "default":
        return torchvision.models.get_model(name, weights="DEFAULT")
    # Segmentation and detection builders fetch ImageNet weights for their backbone unless told
    # not to: a random init (or one about to be overwritten by a state dict) needs no download.
    builder = inspect.signature(torchvision.models.get_model_builder(name)).parameters
    model = torchvision.models.get_model(name, weights=None,
                                         **({"weights_backbone": None} if "weights_backbone" in builder else {}))
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


def _weights_name(weights):
    """'none', 'DEFAULT' or a path, from None (torchvision's convention for random init) or text."""
    if weights is None:
        return "none"
    if isinstance(weights, os.PathLike):
        return os.fspath(weights)
    if not isinstance(weights, str) or not weights:
        raise ValueError(f"weights must be None, 'none', 'DEFAULT' or a state-dict path, got {weights!r}")
    return weights


def load_model(spec="shapesnet", weights="none", device="cpu", seed=0):
    """Build a model from a spec string (see the module docstring); returns ``(model, info)``.

    weights: None / 'none' (random init), 'DEFAULT' or a state-dict path. seed: the random
    init's seed (construction runs under ``torch.manual_seed(seed)``; the global random state is
    left as it was). The model is in eval mode on ``device``; ``info`` is a dict: spec, source,
    weights, seed, mean, std.

    >>> model, info = load_model("torchvision:googlenet", weights="none")
    >>> info["mean"]
    (0.485, 0.456, 0.406)
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"model spec must be a non-empty string, got {spec!r}")
    check_seed(seed)
    weights = _weights_name(weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, source = _build(spec, weights)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model spec {spec!r} produced {type(model).__name__}, not a torch.nn.Module")
    model = model.eval().to(device)
    mean, std = input_normalization(model)
    return model, {"spec": spec, "source": source, "weights": weights, "seed": seed, "mean": mean, "std": std}


def _build(spec, weights):
    if spec in zoo.ZOO_MODELS:
        model, source = zoo.load(spec), "pyviz_fast.zoo"
    elif spec.startswith("torchvision:"):
        model, source = _torchvision(spec.split(":", 1)[1], weights), "torchvision"
        model.input_mean, model.input_std = IMAGENET_MEAN, IMAGENET_STD
        model.class_names = _torchvision_categories(spec.split(":", 1)[1])
    elif spec.startswith("timm:"):
        model, source = _timm(spec.split(":", 1)[1], weights), "timm"
    elif spec.endswith((".pt", ".pth", ".ts")):
        model, source = _torchscript(spec), "torchscript"
    elif ":" in spec:
        model, source = _factory(spec), "factory"
    else:
        raise ValueError(f"unknown model spec {spec!r}; use {', '.join(zoo.ZOO_MODELS)}, torchvision:NAME, timm:NAME, "
                         "a TorchScript file (.pt) or package.module:factory")
    if source in ("pyviz_fast.zoo", "torchscript", "factory") and weights.lower() not in ("none", "default"):
        _load_state(model, weights)  # these builders take no weights: a path given was silently ignored
    return model, source


def fingerprint(model):
    """A short hash (16 hex digits) of every parameter and buffer: names, shapes, dtypes and values.

    Two models with the same fingerprint compute the same function (same architecture assumed);
    the memory format and device do not change it.

    >>> fingerprint(load_model("torchvision:resnet18", seed=0)[0]) == fingerprint(load_model("torchvision:resnet18", seed=0)[0])
    True
    """
    digest = hashlib.sha256()
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


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


def input_patch(model) -> int:
    """The side of the patches the model cuts its input into: its first convolution's kernel when
    its stride is the kernel (a ViT's patch embedding, a patchify stem), else 1."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            kernel = module.kernel_size[0]
            return kernel if module.kernel_size == module.stride and kernel > 1 else 1
    return 1


def declared_input_size(model):
    """The one input size (px, square) a model runs at when it declares it, as torchvision's
    VisionTransformer does (``image_size``, which its forward asserts), else None."""
    size = getattr(model, "image_size", None)
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def not_an_image_model(model) -> str:
    """Why the model may not take an image [B, C, H, W]: its first convolution is 1-D (sequences)
    or 3-D (video: torchvision's r3d_18), named in a sentence; '' when it is 2-D or there is none."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            takes = {1: "sequences [B, C, L]", 3: "video clips [B, C, T, H, W]"}.get(len(module.kernel_size))
            return "" if takes is None else (
                f"its first convolution is a {type(module).__name__}, which takes {takes}, and pyviz_fast renders "
                "images [B, C, H, W]; wrap the model in a module that makes its input from an image")
    return ""


def input_channels(model, default=3):
    """Channels the model's first convolution / patch embedding takes (``default`` if none found)."""
    for module in model.modules():
        channels = getattr(module, "in_channels", None)
        if isinstance(channels, int):
            return channels
    return default
