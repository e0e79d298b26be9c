"""Everything a client sends, checked before any work: unit picks, settings, uploaded photos.

A bad value raises ``InputError`` whose message names it and what would be valid, and whose
``field`` names the page's field that holds it (if one does: the page marks that field); the
routes answer it with HTTP 400 (413 for an upload over the size limit). An upload is held in memory
only (its client-side name is never used) and must decode with Pillow as a real image.

>>> unit_spec({"layer": "conv3", "kind": "channel", "index": 7})
'conv3:7'
>>> settings_from({"steps": 64, "size": 96})
Settings(size=96, steps=64, ...)
"""
import io
import math
import reprlib

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pyviz_fast.engine.dream import DREAM_DEFAULTS
from pyviz_fast.engine.settings import Settings

MAX_UNITS = 16  # per render: a side-by-side comparison, not an atlas
MAX_SIZE = 512  # px of a render
MAX_STEPS = 4096
MAX_JITTER, MAX_OCTAVES = 64, 8
# what a page's render may ask, beyond what Settings accepts
LIMITS = {"size": MAX_SIZE, "steps": MAX_STEPS, "jitter": MAX_JITTER, "octaves": MAX_OCTAVES}
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
MAX_UPLOAD_PIXELS = 4096 * 4096  # refuse decompression bombs before decoding
DREAM_SIDE = 256  # an uploaded photo is dreamed at most this large (longest side), for a live view
SETTINGS_FIELDS = {"steps": int, "size": int, "lr": float, "jitter": int, "blur_start": float, "blur_end": float,
                   "octaves": int, "decay": float, "param": str}
SPEC_OF_KIND = {"channel": "{layer}:{index}", "neuron": "{layer}:{index}@neuron", "class": "{layer}:{index}@class",
                "layer": "{layer}@deepdream"}


class InputError(ValueError):
    """A client's request is malformed; ``status`` is the HTTP code to answer with, ``field`` the
    request's field that holds the bad value (None: no one field)."""

    def __init__(self, message, status=400, field=None):
        super().__init__(message)
        self.status, self.field = status, field


def unit_spec(pick) -> str:
    """The unit spec of a page pick {layer, kind, index}; kind 'layer' is the DeepDream objective."""
    if not isinstance(pick, dict):
        raise InputError(f"a unit must be an object {{layer, kind, index}}, got {pick!r}")
    layer, kind, index = pick.get("layer"), pick.get("kind", "channel"), pick.get("index")
    if not isinstance(layer, str) or not layer:
        raise InputError(f"unit layer must be a layer name, got {layer!r}")
    if kind not in SPEC_OF_KIND:
        raise InputError(f"unit kind must be one of {', '.join(SPEC_OF_KIND)}; got {kind!r}")
    if kind != "layer" and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise InputError(f"unit index must be an integer >= 0 for kind {kind!r}, got {index!r}", field="index")
    return SPEC_OF_KIND[kind].format(layer=layer, index=index)


def unit_specs(picks) -> list[str]:
    if not isinstance(picks, list) or not picks:
        raise InputError(f"units must be a list of 1 to {MAX_UNITS} picks {{layer, kind, index}}, got {picks!r}"[:300])
    if len(picks) > MAX_UNITS:  # the count, not the list's repr (cut mid-token at 300 characters)
        raise InputError(f"at most {MAX_UNITS} units, you have {len(picks)}")
    return [unit_spec(pick) for pick in picks]


def settings_from(values, base=None) -> Settings:
    """A validated Settings from the page's fields (only ``SETTINGS_FIELDS``), within the limits."""
    values = values or {}
    if not isinstance(values, dict):
        raise InputError(f"settings must be an object, got {values!r}")
    unknown = sorted(set(values) - set(SETTINGS_FIELDS))
    if unknown:
        raise InputError(f"unknown setting(s) {', '.join(unknown)}; the page may set: {', '.join(SETTINGS_FIELDS)}")
    changes = {}
    for name, value in values.items():
        kind = SETTINGS_FIELDS[name]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        # an int is integral as it is: float() of a huge one (10**400) overflows
        ok = isinstance(value, str) if kind is str else number and (kind is float or isinstance(value, int)
                                                                    or value.is_integer())
        if not ok:
            what = {str: "a text", int: "an integer", float: "a finite number"}[kind]
            raise InputError(f"setting {name} must be {what}, got {value!r}", field=name)
        changes[name] = kind(value)
    base = base or Settings()
    try:
        settings = base.replace(**changes).validate()
    except (ValueError, TypeError) as error:
        raise InputError(str(error), field=_refused_alone(base, changes)) from None
    for name, limit in LIMITS.items():
        value = max(settings.hw) if name == "size" else getattr(settings, name)
        if value > limit:  # reprlib: a JSON int may have 400 digits
            raise InputError(f"setting {name} must be <= {limit}, got {reprlib.repr(value)}", field=name)
    return settings


def _refused_alone(base, changes):
    """The one field of ``changes`` that ``base`` refuses by itself, else None (a combination)."""
    for name, value in changes.items():
        try:
            base.replace(**{name: value}).validate()
        except (ValueError, TypeError):
            return name
    return None


def form_number(form, name):
    """A number typed in a form's text field ``name`` (int when integral, so the checks above can
    refuse 2.5 for an integer), None when absent or empty; InputError unless a finite number."""
    text = form.get(name)
    if text is None or text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):  # 'inf', 'nan', '1e400'
        raise InputError(f"{name} must be a finite number, got {str(text)[:40]!r}", field=name)
    return int(number) if number.is_integer() else number


def dream_settings(values, photo) -> Settings:
    """Settings of a dream of ``photo`` [C, H, W] at its own size."""
    return settings_from(values, Settings(**DREAM_DEFAULTS, size=tuple(photo.shape[-2:])))


def seed_from(value) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"seed must be an integer >= 0, got {value!r}", field="seed")
    return value


def read_upload(data: bytes) -> torch.Tensor:
    """An uploaded photo's bytes as float [3, H, W] in [0, 1], at most ``DREAM_SIDE`` px a side."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise InputError(f"the upload is {len(data)} bytes; the limit is {MAX_UPLOAD_BYTES} bytes", status=413,
                         field="photo")
    if not data:
        raise InputError("the upload is empty: choose an image file (PNG, JPEG, ...)", field="photo")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_UPLOAD_PIXELS:
                raise InputError(f"the image is {image.width}x{image.height}; the limit is {MAX_UPLOAD_PIXELS} pixels",
                                 field="photo")
            image.load()
            photo = image.convert("RGB")
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"the upload is not an image Pillow can read ({type(error).__name__})",
                         field="photo") from None
    photo.thumbnail((DREAM_SIDE, DREAM_SIDE), Image.LANCZOS)
    return torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
