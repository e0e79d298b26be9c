"""Every knob of a render, in one dataclass with documented defaults.

Defaults follow the classics (DESIGN.md "Settings the classics use"), scaled to images in
[0, 1]: mean-|g| normalized ascent (Øygard, DeepDream), lr 0.05 per step, a gradient blur
decaying 2.0 -> 0.6 px (Øygard: 2.5 -> 0.78 at 224 px), roll jitter of up to 8 px, 128 steps,
a gray init with a little uniform noise. On the shipped ShapesNet (64 px) these give class
images the model scores at p > 0.99 whose stripes carry 10-30x more spectral energy at the class
orientation than across it; blur 1.0 -> 0.3 left visible pixel noise.

Every field is checked when a Settings is made (and again by ``replace``): a bad value raises
ValueError naming the field, the value and what is valid, e.g.
``steps must be an integer >= 1, got 'many'``; the CLI shows the same messages.

>>> s = Settings(size=128, steps=64)
>>> s.replace(lr=0.1).lr
0.1
"""
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch

from pyviz_fast.engine.layout import parse_overrides
from pyviz_fast.ops.reference import NORM_MODES

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
INITS = ("uniform", "pink", "image")
PARAMETERIZATIONS = ("pixel", "fourier", "maco")
OPTIMIZERS = ("ascent", "adam", "nadam")
SCHEDULES = ("linear", "geometric", "cosine")


@dataclass
class Settings:
    """Render settings. Sizes are in pixels of the final image; images live in [0, 1].

    Image and run
      size: output size, int (square) or (H, W); ``render`` and the CLI default to the size a
      model declares it runs at (torchvision's ViT: ``image_size``). steps: optimization steps
      in total (split evenly over the octaves). batch_size: units per forward/backward pass, or
      'auto' (the batch with the best measured throughput that fits a memory budget; see
      autotune.py).
    Optimizer
      optimizer: 'ascent' (normalized gradient ascent through the fused step), 'adam' or 'nadam'
      (torch.optim.Adam / NAdam fed the same processed gradient; 'maco' uses NAdam for 'ascent').
      lr: step size; with 'ascent' and norm='mean_abs' the mean pixel change per step. lr_end: final lr (None = constant),
      reached by ``schedule``.
    Gradient processing (per image, in this order)
      jitter: roll the input by up to +-jitter px each step, un-roll the gradient (DeepDream).
      blur_start / blur_end: Gaussian blur sigma of the gradient, decaying over the run
      (Øygard); 0 disables. schedule: 'linear', 'geometric' or 'cosine' decay of blur and lr.
      eps: added to the gradient's norm before dividing by it.
      laplacian_levels: Laplacian-pyramid normalization of the gradient (TF DeepDream tutorial);
      0 disables. norm: 'mean_abs', 'rms', 'std', 'max_abs' or 'none'; eps. clip: clamp the
      normalized gradient to [-clip, clip] (> 0; inf disables).
    Image
      decay: pull toward ``center`` by this fraction per step. center: the pixel value decay
      pulls toward. lo / hi: pixel clamp.
      image_blur_every / image_blur_sigma: blur the image itself every k steps (Yosinski); 0 = off.
    Scale
      octaves: stages, each ``octave_scale`` times larger than the previous; the first stage is
      size / octave_scale**(octaves-1). octave_scale: size ratio between stages (1.2 = +20% per
      stage: Keras). canvas: optimize random
      ``size`` crops of a larger canvas of this size (Øygard); the result is the canvas.
    Init
      init_noise: amplitude of the noise of init 'uniform' and 'pink'.
      init: 'uniform' (gray + uniform noise of +-init_noise), 'pink' (1/f noise, energy at
      all scales) or 'image' (init_image: a path, PIL image, float tensor [C, H, W] in [0, 1] or
      uint8 tensor in 0-255, which is divided by 255 as torchvision's to_tensor does).
    Parameterization (Lucid's look)
      param: 'pixel', 'fourier' (scaled spectrum + decorrelated color + sigmoid; uses autograd
      and the optimizer, not the fused step) or 'maco' (Fel et al. 2023: only the spectrum's
      phase is optimized, its magnitude fixed to ``maco_magnitude``; many noisy random crops per
      step; NAdam, or Adam with optimizer='adam'; ``res.alpha`` holds the attribution map).
      decorrelate: color decorrelation for 3 channels. scale_range / rotate: per-image random
      scale in [a, b] and rotation in degrees +-rotate each step, applied differentiably (off by
      default for 'pixel').
    MaCo
      maco_magnitude: the fixed spectrum magnitude: '1/f' (a natural-image prior), 'shapes'
      (the mean spectrum of the shipped procedural dataset) or a folder of images. maco_crops:
      random crops per image per step. maco_box: crop side as a fraction of the image, from the
      first step's value to the last's (the paper's schedule goes from large to small; crops
      zoomed to 0.4 of the side move a pattern out of the scale a model trained at one image
      size knows: on the zoo's ViT at 32 steps its own mean class p is 0.37 with (0.8, 0.4), 0.99
      with the default (1.0, 0.8)). maco_wrap: the share of the crops that may wrap around the
      (periodic) image's edges, the others staying inside it (on the zoo at 96 steps, three
      seeds: the ViT's own class images keep p >= 0.9 under a random shift and crop for 9-10 of
      10 classes with 0.25, 6-8 with 0, 8 with 0.5, which also lowers the models' own p).
      maco_noise: std of the Gaussian noise added to every crop, first step to last. maco_lr:
      the phase optimizer's learning rate; ``lr`` is for pixels. The paper's 1.0 is for
      hundreds of steps at 224+ px; on the zoo at 32 steps 0.3 did better than 0.1 (transfer
      across the zoo 0.35 against 0.28).
    Facets (diversity, Olah et al. 2017)
      facets: images per unit, optimized together in one batch. diversity: weight of the
      penalty on the similarity of their Gram matrices, relative to the unit's objective (0 =
      independent images; used only with facets > 1); each facet moves away from the others as
      they are. diversity_floor: a facet pushes fully while its objective is the best facet's,
      less as it falls, and not at all below this fraction of it (then it only climbs back to the
      unit; engine/goals/diversity.py). diversity_layer: where the Gram matrices are taken (None
      = the unit's own layer). On a model that cuts its input into patches (a ViT) ``render``
      and the CLI render facets with param='fourier' unless param is given or Fourier cannot
      serve the settings (octaves, a canvas, an init image): pixel facets lose the unit to the
      penalty there.
    ReLU redirection
      redirect_relu_steps: for this many first steps, an image whose unit does not fire yet
      (objective <= 0) gets a gradient in which the unit's own ReLU (GELU) also passes it where
      the unit is off when it would switch it on (Lucid's RedirectedReLU, at the target only;
      the activations below keep their true gradient; engine/redirect.py), so units
      dead on the starting image can still be rendered; images whose unit fires keep the true
      gradient. None = the first eighth of ``steps`` (16 of 128); 0 disables.
    Execution
      precision: 'auto', 'fp32', 'bf16' or 'fp16' (autocast of the model; 'auto' is measured: the
      first batch tries each allowed execution and keeps the fastest whose objectives stay
      within 5% of fp32's, see engine/autotune.py; the choice is in
      ``RenderResult.info['execution']``; set precision, memory_format and compile explicitly for
      results that are bit-identical across machines). memory_format: 'auto' (measured with
      precision), 'contiguous' or 'channels_last'. compile: True, False or 'auto' (measured with
      precision; torch.compile of the model between the hooked layers). batch_invariant: run the
      model's forward and backward with kernels whose rounding does not depend on the batch (on
      the CPU torch's own convolutions instead of oneDNN's or NNPACK's, which round by batch
      size), so a unit's image is the same bits alone, in any batch and at any batch_size;
      without it those rounding differences (1e-7) can grow over the ascent into visibly
      different images of the same unit (up to 1.0 per pixel). Up to a third more time on
      convolutional models; CPU only (BENCHMARKS.md, "Batch invariance").
    Model input
      channels: input channels (None = the model's first conv). mean / std: per-channel input
      normalization (None = the model's own, see ``pyviz_fast.engine.models``).
    Activation layouts
      layout: {layer: 'nchw' | 'nhwc' | 'tokens' | 'vector'} for layers whose layout the probe
      gets wrong (see ``pyviz_fast.engine.layout``; also accepted as text 'layer=nhwc,other=nchw').
    """
    size: Union[int, Tuple[int, int]] = 128
    steps: int = 128
    batch_size: Union[int, str] = 32
    optimizer: str = "ascent"
    lr: float = 0.05
    lr_end: Optional[float] = None
    jitter: int = 8
    blur_start: float = 2.0
    blur_end: float = 0.6
    schedule: str = "linear"
    laplacian_levels: int = 0
    norm: str = "mean_abs"
    eps: float = 1e-8
    clip: float = math.inf
    decay: float = 0.0
    center: float = 0.5
    lo: float = 0.0
    hi: float = 1.0
    image_blur_every: int = 0
    image_blur_sigma: float = 0.5
    octaves: int = 1
    octave_scale: float = 1.2
    canvas: Optional[int] = None
    init: str = "uniform"
    init_noise: float = 0.1
    init_image: object = None
    param: str = "pixel"
    decorrelate: bool = True
    maco_magnitude: str = "1/f"
    maco_crops: int = 8
    maco_box: Tuple[float, float] = (1.0, 0.8)
    maco_wrap: float = 0.25
    maco_noise: Tuple[float, float] = (0.1, 0.02)
    maco_lr: float = 0.3
    facets: int = 1
    diversity: float = 1.25
    diversity_floor: float = 0.85
    diversity_layer: Optional[str] = None
    scale_range: Tuple[float, float] = (1.0, 1.0)
    rotate: float = 0.0
    redirect_relu_steps: Optional[int] = None
    precision: str = "auto"
    memory_format: str = "auto"
    compile: Union[bool, str] = False
    batch_invariant: bool = False
    channels: Optional[int] = None
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    layout: Optional[Dict[str, str]] = None

    def __post_init__(self):
        self.layout = parse_overrides(self.layout)
        self.validate()

    def replace(self, **changes):
        """A copy with some fields changed; unknown names raise TypeError naming the valid ones."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown setting(s) {', '.join(sorted(unknown))}; valid: "
                            f"{', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    @property
    def redirect_steps(self):
        """How many first steps use redirected ReLUs (``redirect_relu_steps``, None resolved)."""
        return self.steps // 8 if self.redirect_relu_steps is None else self.redirect_relu_steps

    @property
    def hw(self):
        """(H, W) of the output."""
        return (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)

    def validate(self):
        """Raise ValueError naming the first bad field, its value and what is valid; returns self."""
        _choice("precision", self.precision, PRECISIONS)
        _choice("memory_format", self.memory_format, MEMORY_FORMATS)
        _choice("init", self.init, INITS)
        _choice("param", self.param, PARAMETERIZATIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("norm", self.norm, NORM_MODES)
        size = self.size if isinstance(self.size, (tuple, list)) else (self.size, self.size)
        if len(size) != 2 or not all(_is_int(s) and s >= 1 for s in size):
            raise ValueError(f"size must be a positive int or (H, W) of positive ints, got {self.size!r}")
        for name in ("steps", "octaves", "maco_crops", "facets"):
            _integer(name, getattr(self, name), low=1)
        if self.batch_size != "auto":
            _integer("batch_size", self.batch_size, low=1)
        if not (isinstance(self.compile, bool) or self.compile == "auto"):
            raise ValueError(f"compile must be True, False or 'auto', got {self.compile!r}")
        for name in ("jitter", "laplacian_levels", "image_blur_every"):
            _integer(name, getattr(self, name), low=0)
        if self.redirect_relu_steps is not None:
            _integer("redirect_relu_steps", self.redirect_relu_steps, low=0)
        for name in ("blur_start", "blur_end", "image_blur_sigma", "init_noise", "eps", "diversity"):
            _number(name, getattr(self, name), low=0.0)
        _number("maco_wrap", self.maco_wrap, low=0.0, high=1.0)
        _number("diversity_floor", self.diversity_floor, low=0.0, high=1.0)
        if self.diversity_floor == 1:
            raise ValueError("diversity_floor must be below 1, got 1: no facet would ever push (diversity=0 "
                             "turns the penalty off)")
        _number("maco_lr", self.maco_lr, low=0.0, zero="maco_lr=0 would never change the phase")
        for name in ("center", "lo", "hi", "rotate"):
            _number(name, getattr(self, name))
        _number("lr", self.lr, low=0.0, zero="lr=0 would never change the image")  # < 0 would descend
        if self.lr_end is not None:
            _number("lr_end", self.lr_end, low=0.0)  # 0: the schedule decays to a stop
        _number("clip", self.clip, low=0.0, allow_inf=True, zero="clip=0 would zero every step; inf disables clipping")
        _number("decay", self.decay, low=0.0, high=1.0)
        if not self.lo < self.hi:
            raise ValueError(f"lo must be below hi, got lo={self.lo!r}, hi={self.hi!r}")
        _number("octave_scale", self.octave_scale, low=1.0)
        if self.canvas is not None:
            _integer("canvas", self.canvas, low=1)
            if self.canvas < min(size) or self.octaves > 1:
                raise ValueError(f"canvas must be >= size {self.size!r} and used with octaves=1, "
                                 f"got canvas={self.canvas!r}")
        for name in ("decorrelate", "batch_invariant"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _init_image(self.init_image)
        if self.init == "image" and self.init_image is None:
            raise ValueError("init='image' needs init_image (a path, PIL image or tensor [C, H, W])")
        if not isinstance(self.scale_range, (tuple, list)) or len(self.scale_range) != 2 or not all(
                _is_finite(v) for v in self.scale_range) or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) finite numbers with 0 < low <= high, "
                             f"got {self.scale_range!r}")
        if self.channels is not None:
            _integer("channels", self.channels, low=1)
        if len(self.maco_box) != 2 or not all(_is_finite(v) and 0 < v <= 1 for v in self.maco_box):
            raise ValueError(f"maco_box must be (first, last) fractions in (0, 1], got {self.maco_box!r}")
        if len(self.maco_noise) != 2 or not all(_is_finite(v) and v >= 0 for v in self.maco_noise):
            raise ValueError(f"maco_noise must be (first, last) stds >= 0, got {self.maco_noise!r}")
        if self.diversity_layer is not None and not isinstance(self.diversity_layer, str):
            raise ValueError(f"diversity_layer must be a layer name or None, got {self.diversity_layer!r}")
        if not isinstance(self.maco_magnitude, str):
            raise ValueError(f"maco_magnitude must be '1/f', 'shapes' or a folder path, got {self.maco_magnitude!r}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be given together")
        if self.mean is not None:
            for name, low in (("mean", -math.inf), ("std", 0.0)):
                values = getattr(self, name)
                if not isinstance(values, (tuple, list)) or not values or not all(
                        _is_finite(v) and v > low for v in values):
                    what = "finite numbers" if name == "mean" else "finite numbers > 0"
                    raise ValueError(f"{name} must be a tuple of {what}, one per input channel, got {values!r}")
            if len(self.mean) != len(self.std):
                raise ValueError(f"mean and std must have one value per channel each, got {len(self.mean)} "
                                 f"and {len(self.std)} values")
        return self


def check_settings(settings):
    """``settings`` if it is None or a Settings, else ValueError saying how to give them."""
    if settings is not None and not isinstance(settings, Settings):
        raise ValueError(f"settings must be a pvf.Settings, got {type(settings).__name__}; pass overrides as "
                         "keyword arguments (render(model, units, steps=64)) or as Settings(**overrides)")
    return settings


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _choice(name, value, valid):
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(valid)}; got {value!r}")


def _integer(name, value, low):
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _number(name, value, *, low=-math.inf, high=math.inf, allow_inf=False, zero=None):
    """A real number in [low, high], finite unless ``allow_inf``; not 0 when ``zero`` (why not) is given."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if is_number and (math.isfinite(value) or (allow_inf and value == math.inf)) and low <= value <= high \
            and not (zero and value == 0):
        return
    text = ("a " if allow_inf else "a finite ") + "number"
    if low > -math.inf and high < math.inf:
        text += f" in [{low:g}, {high:g}]"
    elif low > -math.inf:
        text += f" {'>' if zero and low == 0 else '>='} {low:g}"
    text += " (inf allowed)" if allow_inf else ""
    hint = f" ({zero})" if zero and value == 0 else ""
    raise ValueError(f"{name} must be {text}, got {value!r}{hint}")


def _init_image(image):
    """None, a path, a PIL image, or a float / uint8 tensor (the pixels are checked when loaded)."""
    if image is None or isinstance(image, (str, Path)):
        return
    if isinstance(image, torch.Tensor):
        if not (image.dtype.is_floating_point or image.dtype == torch.uint8):
            raise ValueError(f"init_image must be a float tensor in [0, 1] or a uint8 tensor in 0-255, "
                             f"got dtype {image.dtype}")
        return
    if not hasattr(image, "convert"):  # PIL images convert between modes
        raise ValueError(f"init_image must be a path, a PIL image or a tensor [C, H, W], got {type(image).__name__}")
