"""Argument checks shared by every backend: clear errors naming the argument, what it got and
what is valid, before any kernel sees the data. Returns canonical tensors (shifts int64 [B, 2],
sigma float32 [B]) on the image's device.
"""
import math

import torch

from pyviz_fast.ops.reference import NORM_MODES

STORAGE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _shape(t):
    return list(t.shape)


def image(x, name="x"):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, C, H, W], got {type(x).__name__}")
    if x.dtype not in STORAGE_DTYPES:
        raise TypeError(f"{name} must be float32, float16 or bfloat16, got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be a 4-D tensor [B, C, H, W], got shape {_shape(x)}")
    if x.numel() == 0:
        raise ValueError(f"{name} must hold at least one image with C, H, W >= 1, got shape {_shape(x)}")
    return x


def like(other, x, name, x_name="x"):
    """``other`` must match ``x`` in shape, dtype and device."""
    image(other, name)
    if other.shape != x.shape:
        raise ValueError(f"{name} must have the shape of {x_name} {_shape(x)}, got {_shape(other)}")
    if other.dtype != x.dtype:
        raise TypeError(f"{name} must have the dtype of {x_name} ({x.dtype}), got {other.dtype}")
    if other.device != x.device:
        raise ValueError(f"{name} must be on the device of {x_name} ({x.device}), got {other.device}")
    return other


def _canonical(value, x, dtype, shape):
    """Whether ``value`` is already what a check returns (dtype, shape, x's device, contiguous):
    a loop's tensors made once then pass without the three calls of a conversion."""
    return (isinstance(value, torch.Tensor) and value.dtype == dtype and value.shape == shape
            and value.device == x.device and value.is_contiguous())


def shifts(value, x, name="shifts"):
    B = x.shape[0]
    if _canonical(value, x, torch.int64, (B, 2)):
        return value
    if isinstance(value, torch.Tensor):
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise TypeError(f"{name} must hold integers (dy, dx), got dtype {value.dtype}")
        if value.device != x.device:
            raise ValueError(f"{name} must be on the device of x ({x.device}), got {value.device}")
    value = torch.as_tensor(value, device=x.device)
    if value.dtype.is_floating_point:
        raise TypeError(f"{name} must hold integers (dy, dx), got {value.dtype}")
    if value.shape != (B, 2):
        raise ValueError(f"{name} must have shape [B, 2] = [{B}, 2] (one (dy, dx) per image), got {_shape(value)}")
    return value.to(torch.int64).contiguous()


def sigma(value, x, name="sigma"):
    """A number (same sigma for every image) or one value per image."""
    B = x.shape[0]
    if _canonical(value, x, torch.float32, (B,)):
        return value
    if isinstance(value, torch.Tensor):
        if not value.dtype.is_floating_point:
            raise TypeError(f"{name} must be floating point, got {value.dtype}")
        if value.device != x.device:
            raise ValueError(f"{name} must be on the device of x ({x.device}), got {value.device}")
        if value.dim() == 0:
            value = value.expand(B)
        if value.shape != (B,):
            raise ValueError(f"{name} must be a number or hold one value per image (B={B}), got shape {_shape(value)}")
        return value.to(torch.float32).contiguous()
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number or a float tensor [B], got {value!r}")
    return torch.full((B,), float(value), dtype=torch.float32, device=x.device)


def norm_mode(mode):
    if mode not in NORM_MODES:
        raise ValueError(f"norm mode must be one of {', '.join(NORM_MODES)}; got {mode!r}")
    return mode


def number(value, name, *, low=-math.inf, high=math.inf, allow_inf=False):
    """A real number in [low, high] (finite unless ``allow_inf``); messages like the kernels':
    'lr must be finite, got inf', 'eps must be finite and >= 0, got -1.0', 'decay must be in [0, 1], got 1.5'."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf) or not low <= value <= high:
        if low > -math.inf and high < math.inf:
            valid = f"in [{low:g}, {high:g}]"
        elif low > -math.inf:
            valid = (f">= {low:g} (inf allowed)" if allow_inf else f"finite and >= {low:g}")
        else:
            valid = "finite"
        raise ValueError(f"{name} must be {valid}, got {value!r}")
    return value


MAX_CROP_EXTENT = 1e6  # csrc/checks.h kMaxCropExtent


def crop_boxes(boxes, x):
    """float32 [B, k, 3] (size, centre y, centre x) as fractions of the image, on the CPU whatever
    the images' device (geometry the host reads: checking it costs no device sync): 0 < size <=
    1e6, centres within +-1e6 (they wrap; the bounds keep pixel positions far inside int64)."""
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"boxes must be a float tensor [B, k, 3], got {type(boxes).__name__}")
    if not boxes.dtype.is_floating_point:
        raise TypeError(f"boxes must be floating point, got {boxes.dtype}")
    if boxes.dim() != 3 or boxes.shape[0] != x.shape[0] or boxes.shape[1] < 1 or boxes.shape[2] != 3:
        raise ValueError(f"boxes must have shape [B, k, 3] = [{x.shape[0]}, k >= 1, 3] (size, centre y, centre x), "
                         f"got {_shape(boxes)}")
    if boxes.device.type != "cpu":
        raise ValueError(f"boxes must be on the CPU (they are read by the host), got {boxes.device}")
    boxes = boxes.to(torch.float32).contiguous()
    size, centres = boxes[..., 0], boxes[..., 1:]
    bad_size = ~((size > 0) & (size <= MAX_CROP_EXTENT))
    bad_centre = ~(centres.abs() <= MAX_CROP_EXTENT).all(-1)
    for bad, what in ((bad_size, f"sizes in (0, {MAX_CROP_EXTENT:g}]"),
                      (bad_centre, f"centres finite and within +-{MAX_CROP_EXTENT:g}")):
        if bool(bad.any()):
            b, j = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"boxes must have {what}; box [{b}, {j}] is {boxes[b, j].tolist()}")
    return boxes
