"""Every knob of a render, in one dataclass with documented defaults.

Defaults follow the classics (DESIGN.md "Settings the classics use"), scaled to images in
[0, 1]: mean-|g| normalized ascent (Øygard, DeepDream), lr 0.05 per step, a gradient blur
decaying 2.0 -> 0.6 px (Øygard: 2.5 -> 0.78 at 224 px), roll jitter of up to 8 px, 128 steps,
a gray init with a little uniform noise. On the shipped ShapesNet (64 px) these give class
images the model scores at p > 0.99 whose stripes carry 10-30x more spectral energy at the class
orientation than across it; blur 1.0 -> 0.3 left visible pixel noise.

>>> s = Settings(size=128, steps=64)
>>> s.replace(lr=0.1).lr
0.1
"""
import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

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
      size: output size, int (square) or (H, W). steps: optimization steps in total (split
      evenly over the octaves). batch_size: units per forward/backward pass.
    Optimizer
      optimizer: 'ascent' (normalized gradient ascent through the fused step), 'adam' or 'nadam'
      (torch.optim.Adam / NAdam fed the same processed gradient; 'maco' uses NAdam for 'ascent'). lr: step size; with 'ascent' and
      norm='mean_abs' the mean pixel change per step. lr_end: final lr (None = constant),
      reached by ``schedule``.
    Gradient processing (per image, in this order)
      jitter: roll the input by up to +-jitter px each step, un-roll the gradient (DeepDream).
      blur_start / blur_end: Gaussian blur sigma of the gradient, decaying over the run
      (Øygard); 0 disables. schedule: 'linear', 'geometric' or 'cosine' decay of blur and lr.
      laplacian_levels: Laplacian-pyramid normalization of the gradient (TF DeepDream tutorial);
      0 disables. norm: 'mean_abs', 'rms', 'std', 'max_abs' or 'none'; eps. clip: clamp the
      normalized gradient to [-clip, clip] (inf disables).
    Image
      decay: pull toward ``center`` by this fraction per step. lo / hi: pixel clamp.
      image_blur_every / image_blur_sigma: blur the image itself every k steps (Yosinski); 0 = off.
    Scale
      octaves: stages, each ``octave_scale`` times larger than the previous (+20% per stage:
      Keras); the first stage is size / octave_scale**(octaves-1). canvas: optimize random
      ``size`` crops of a larger canvas of this size (Øygard); the result is the canvas.
    Init
      init: 'uniform' (gray + uniform noise of +-init_noise), 'pink' (1/f noise, energy at
      all scales) or 'image' (init_image: a path, PIL image or tensor [C, H, W] in [0, 1]).
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
      first step's value to the last's (the paper's schedule goes from large to small).
      maco_noise: std of the Gaussian noise added to every crop, first step to last. maco_lr:
      the phase optimizer's learning rate; ``lr`` is for pixels. The paper's 1.0 is for hundreds
      of steps at 224+ px; on ShapesNet at 32 steps 0.3 did better (own-class recognition of the
      ten class images 5/10 against 3/10 with the 1/f magnitude, 9/10 with the shapes spectrum).
    Facets (diversity, Olah et al. 2017)
      facets: images per unit, optimized together in one batch. diversity: weight of the
      penalty on the similarity of their Gram matrices, relative to the unit's objective (0 =
      independent images; used only with facets > 1). diversity_layer: where the Gram matrices are taken (None = the
      unit's own layer).
    Execution
      precision: 'auto', 'fp32', 'bf16' or 'fp16' (autocast of the model); memory_format:
      'auto', 'contiguous' or 'channels_last'; compile: torch.compile the model.
      'auto' picks bf16 + channels_last where it is fast (CUDA with bf16, CPUs with AMX-BF16;
      measured ~3x on googlenet here) and fp32 otherwise.
    Model input
      channels: input channels (None = the model's first conv). mean / std: per-channel input
      normalization (None = the model's own, see ``pyviz_fast.engine.models``).
    """
    size: Union[int, Tuple[int, int]] = 128
    steps: int = 128
    batch_size: int = 32
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
    maco_box: Tuple[float, float] = (0.8, 0.4)
    maco_noise: Tuple[float, float] = (0.1, 0.02)
    maco_lr: float = 0.3
    facets: int = 1
    diversity: float = 0.5
    diversity_layer: Optional[str] = None
    scale_range: Tuple[float, float] = (1.0, 1.0)
    rotate: float = 0.0
    precision: str = "auto"
    memory_format: str = "auto"
    compile: bool = False
    channels: Optional[int] = None
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None

    def replace(self, **changes):
        """A copy with some fields changed; unknown names raise TypeError naming the valid ones."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown setting(s) {', '.join(sorted(unknown))}; valid: "
                            f"{', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    @property
    def hw(self):
        """(H, W) of the output."""
        return (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)

    def validate(self):
        """Raise ValueError / TypeError naming the first bad field; returns self."""
        _choice("precision", self.precision, PRECISIONS)
        _choice("memory_format", self.memory_format, MEMORY_FORMATS)
        _choice("init", self.init, INITS)
        _choice("param", self.param, PARAMETERIZATIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        size = self.size if isinstance(self.size, (tuple, list)) else (self.size, self.size)
        if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size):
            raise ValueError(f"size must be a positive int or (H, W), got {self.size!r}")
        for name in ("steps", "batch_size", "octaves", "maco_crops", "facets"):
            _integer(name, getattr(self, name), low=1)
        for name in ("jitter", "laplacian_levels", "image_blur_every"):
            _integer(name, getattr(self, name), low=0)
        for name in ("blur_start", "blur_end", "image_blur_sigma", "init_noise", "eps", "clip", "diversity", "maco_lr"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.decay <= 1:
            raise ValueError(f"decay must be in [0, 1], got {self.decay!r}")
        if not self.lo < self.hi:
            raise ValueError(f"lo must be below hi, got lo={self.lo!r}, hi={self.hi!r}")
        if not self.octave_scale >= 1:
            raise ValueError(f"octave_scale must be >= 1, got {self.octave_scale!r}")
        if self.canvas is not None and (self.canvas < min(size) or self.octaves > 1):
            raise ValueError(f"canvas must be >= size {self.size!r} and used with octaves=1, got canvas={self.canvas!r}")
        if self.init == "image" and self.init_image is None:
            raise ValueError("init='image' needs init_image (a path, PIL image or tensor [C, H, W])")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range!r}")
        if len(self.maco_box) != 2 or not all(0 < b <= 1 for b in self.maco_box):
            raise ValueError(f"maco_box must be (first, last) fractions in (0, 1], got {self.maco_box!r}")
        if len(self.maco_noise) != 2 or not all(n >= 0 for n in self.maco_noise):
            raise ValueError(f"maco_noise must be (first, last) stds >= 0, got {self.maco_noise!r}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be given together")
        return self


def _choice(name, value, valid):
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(valid)}; got {value!r}")


def _integer(name, value, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
