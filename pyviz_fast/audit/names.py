"""Injective file names for layer and unit names, whatever characters they hold.

Module names are arbitrary strings (``conv_α``, ``a<b``, ``..``), and a run directory must give
every one of them its own files. ``stem(text)`` keeps ASCII letters, digits, ``_`` and ``-`` and
a ``.`` that is not the first character, and writes every other byte of the UTF-8 text as
``~hh`` (two lower-case hex digits), ``~`` itself included. That is reversible, so different
names never share a stem; a stem never starts with ``.``, so ``.`` and ``..`` are never path
components and no output is a hidden file. Names with upper-case letters get a ``~h`` + hash
suffix (``~h`` is not an escape), so ``Conv`` and ``conv`` stay apart on case-insensitive file
systems (macOS, Windows). Very long stems are cut and suffixed the same way (file names are
limited to 255 bytes).

``unit_file(layer, unit, facet=, variant=)`` is where a unit's picture lives in any output folder
(an atlas's ``images/``, a ``render --out``): ``<layer stem>/<unit stem>``, plus ``~facet<f>``
for facet f > 0 of a unit rendered with facets and ``~<variant>`` for a variant of the picture
(``~rgba``: MaCo's attribution map as transparency). A stem never holds ``~f`` + ``a`` (the
escape of byte 0xFA, which UTF-8 never uses) nor ``~r``, so the suffixes can always be told apart
from the stem and the path stays injective.

>>> stem("layer3.0.downsample"), stem("conv_α"), stem("..")
('layer3.0.downsample', 'conv_~ce~b1', '~2e.')
>>> unit_file("conv4", "conv4:5", facet=2, variant="rgba")
'conv4/5~facet2~rgba'
>>> unit_stem("conv1", "conv1:7"), unit_stem("conv1", "0.5*conv1:1+0.5*conv1:2")
('7', '~u0.5~2aconv1~3a1~2b0.5~2aconv1~3a2')
"""
import hashlib

MAX_STEM = 120


def _hash(text: str) -> str:
    return "~h" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def stem(text: str) -> str:
    """A file-name-safe, injective form of ``text`` (see the module docstring)."""
    out = []
    for position, char in enumerate(text):
        if char.isascii() and (char.isalnum() or char in "_-" or (char == "." and position)):
            out.append(char)
        else:
            out.append("".join(f"~{byte:02x}" for byte in char.encode("utf-8")))
    escaped = "".join(out) or "~"  # the empty name too gets a name
    if len(escaped) > MAX_STEM:
        return escaped[:MAX_STEM] + _hash(text)
    if any(char.isupper() for char in text):
        return escaped + _hash(text)
    return escaped


def unit_stem(layer: str, unit: str) -> str:
    """The file stem of ``unit`` inside its layer's folder: the part after ``layer:`` for plain
    units ('conv1:7' -> '7', 'conv1:7@neuron' -> '7~40neuron'; these start with a digit), else
    ``~u`` + the stem of the whole unit (weighted sums, deepdream), which never starts with one."""
    rest = unit[len(layer) + 1:] if unit.startswith(layer + ":") else ""
    if rest[:1].isdigit():
        return stem(rest)
    return "~u" + stem(unit)



VARIANTS = ("rgba",)


def unit_file(layer: str, unit: str, *, facet: int = 0, variant: str = "") -> str:
    """The relative path, without suffix, of ``unit``'s picture (facet ``facet``, ``variant`` one of
    VARIANTS or '' for the picture itself): '<layer stem>/<unit stem>[~facet<f>][~<variant>]'."""
    if variant and variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS} or '', got {variant!r}")
    return (f"{stem(layer)}/{unit_stem(layer, unit)}" + (f"~facet{facet}" if facet else "")
            + (f"~{variant}" if variant else ""))
