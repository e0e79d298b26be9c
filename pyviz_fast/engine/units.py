"""Units: what one image of a batch maximizes, parsed from strings such as ``"conv3:0-15"``.

Grammar (whitespace around ``+ - * ,`` is ignored)::

    spec   := item ("," item)*                 several items; a list of strings works too
    item   := sum | ranged
    ranged := layer [":" channels] ["@" kind]  channels "A-B" (inclusive) expands to B-A+1 units;
                                               no channels ("conv3") means every channel of the layer
    sum    := term (("+" | " - ") term)*       a weighted sum rendered as ONE unit
    term   := [number "*"] ["-"] layer [":" index] ["@" kind ["(" args ")"]]

    kind   := channel (default)    mean of channel ``index`` over positions (tokens for [B, N, D])
            | neuron[(y, x)]       one position of channel ``index``; default the center
                                   (token layout: neuron(t) is token t)
            | deepdream            mean squared activation of the whole layer (no index)
            | class                logit ``index`` of a 2-D [B, K] output; a channel of a 2-D
                                   output is the same thing, so "fc:207" is a class logit
            | direction(v0, v1, ..)  dot product of the channel vector with v, mean over positions

The pseudo layer ``output`` is the model's return value (the pre-softmax logits of a classifier).

A class may be named instead of numbered on the class layer (``output`` or the model's last
Linear/conv layer with one output per class): ``fc:rings``, ``output:great_white_shark``. Names
come from ``models.class_names(model)``, match case-insensitively with any run of spaces or
punctuation written as ``_``, and need ``model`` (``parse_units(spec, model=...)``); a name two
classes share is an error that lists their indices.

>>> [str(u) for u in parse_units("conv3:0-2")]
['conv3:0', 'conv3:1', 'conv3:2']
>>> str(parse_units("0.5*conv3:1 + 0.5*conv3:2@neuron(3,4)")[0])
'0.5*conv3:1+0.5*conv3:2@neuron(3,4)'
"""
import difflib
import math
import re
from dataclasses import dataclass, replace
from typing import Optional, Tuple

KINDS = ("channel", "neuron", "deepdream", "class", "direction")
OUTPUT = "output"

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_TERM = re.compile(
    rf"^(?:(?P<weight>{_NUMBER})\s*\*\s*)?(?P<neg>-)?\s*(?P<layer>[\w.]+)"
    r"(?::(?:(?P<first>\d+)(?:-(?P<last>\d+))?|(?P<name>[A-Za-z_][\w-]*)))?"
    r"(?:@(?P<kind>[a-z]+)(?:\((?P<args>[^()]*)\))?)?$"
)


@dataclass(frozen=True)
class Term:
    """``weight * objective(layer, kind, index, position | vector)`` of one image."""
    layer: str
    kind: str = "channel"
    index: Optional[int] = None  # channel / class index; None for deepdream and direction
    position: Optional[Tuple[int, ...]] = None  # neuron position; None = center
    vector: Optional[Tuple[float, ...]] = None  # direction in channel space
    weight: float = 1.0

    def __post_init__(self):
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight == 0:
            layer = self.layer if self.index is None else f"{self.layer}:{self.index}"
            raise ValueError(f"the weight of term {layer!r} must be a finite non-zero number, got {weight!r}"
                             + (" (a weight of 0 would make the term a no-op)" if weight == 0 else ""))

    def __str__(self):
        text = self.layer if self.index is None else f"{self.layer}:{self.index}"
        if self.kind == "neuron":
            text += "@neuron" + ("" if self.position is None else "(" + ",".join(map(str, self.position)) + ")")
        elif self.kind == "direction":
            text += "@direction(" + ",".join(repr(float(v)) for v in self.vector) + ")"
        elif self.kind != "channel":
            text += "@" + self.kind
        if self.weight == 1.0:
            return text
        if self.weight == -1.0:
            return "-" + text
        return f"{self.weight!r}*{text}"


@dataclass(frozen=True)
class Unit:
    """One image's objective: a weighted sum of terms (usually a single term of weight 1).

    ``str(unit)`` is a spec that parses back to an equal unit.

    >>> u = Unit.channel("inception4a", 7); u.layer, u.kind, u.index, str(u)
    ('inception4a', 'channel', 7, 'inception4a:7')
    """
    terms: Tuple[Term, ...]

    @classmethod
    def channel(cls, layer, index, weight=1.0):
        return cls((Term(layer, "channel", index, weight=weight),))

    @classmethod
    def neuron(cls, layer, index, position=None):
        return cls((Term(layer, "neuron", index, None if position is None else tuple(position)),))

    @classmethod
    def deepdream(cls, layer):
        return cls((Term(layer, "deepdream"),))

    @classmethod
    def class_logit(cls, layer, index):
        return cls((Term(layer, "class", index),))

    @classmethod
    def direction(cls, layer, vector):
        return cls((Term(layer, "direction", vector=tuple(float(v) for v in vector)),))

    def __neg__(self):
        return Unit(tuple(replace(t, weight=-t.weight) for t in self.terms))

    @property
    def layer(self):
        return self.terms[0].layer

    @property
    def kind(self):
        return self.terms[0].kind if len(self.terms) == 1 else "sum"

    @property
    def index(self):
        return self.terms[0].index if len(self.terms) == 1 else None

    @property
    def layers(self):
        return tuple(dict.fromkeys(t.layer for t in self.terms))

    def __str__(self):
        return "+".join(map(str, self.terms))


def _split_top_level(text, separators):
    """Split at characters in ``separators`` that are not inside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and ch in separators:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _split_sum(item):
    # "a - b" with spaces subtracts; "a:1-3" (no spaces) is a channel range.
    item = re.sub(r"\s+-\s+", "+-", item.strip())
    return [t.strip() for t in _split_top_level(re.sub(r"(?<!\d[eE])\+", "\x00", item), "\x00")]


def _numbers(args, spec, cast):
    try:
        return tuple(cast(a) for a in args.split(",") if a.strip())
    except ValueError:
        raise ValueError(f"unit {spec!r}: arguments ({args}) must be numbers") from None


def _term(text, spec, classes):
    m = _TERM.match(text)
    if m is None:
        raise ValueError(
            f"malformed unit {spec!r} (term {text!r}); expected forms like 'conv3:7', 'conv3:0-15', "
            "'conv3', 'conv3:7@neuron(3,4)', 'conv3@deepdream', 'fc:207@class', '-conv3:7', "
            "'0.5*conv3:1+0.5*conv3:2'")
    kind = m["kind"] or "channel"
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unit {spec!r}: unknown kind {kind!r}{hint}; valid kinds: {', '.join(KINDS)}")
    if m["args"] is not None and kind not in ("neuron", "direction"):
        raise ValueError(f"unit {spec!r}: kind {kind!r} takes no arguments")
    weight = float(m["weight"]) if m["weight"] else 1.0
    if m["neg"]:
        weight = -weight
    first = None if m["first"] is None else int(m["first"])
    if m["name"] is not None:
        first = classes.index(m["layer"], m["name"], spec)
    last = first if m["last"] is None else int(m["last"])
    if first is not None and last < first:
        raise ValueError(f"unit {spec!r}: channel range {first}-{last} is empty (the end must be >= the start)")
    if kind in ("deepdream", "direction") and first is not None:
        raise ValueError(f"unit {spec!r}: kind {kind!r} takes no channel index")
    if kind == "class" and first is None:
        raise ValueError(f"unit {spec!r}: a class unit needs an index, e.g. 'fc:207@class'")
    position = vector = None
    if kind == "neuron" and m["args"]:
        position = _numbers(m["args"], spec, int)
    if kind == "direction":
        vector = _numbers(m["args"] or "", spec, float)
        if not vector:
            raise ValueError(f"unit {spec!r}: a direction needs its vector, e.g. 'conv3@direction(1,0,-1)'")
    return Term(m["layer"], kind, first, position, vector, weight), last


def _parse_item(item, classes):
    texts = _split_sum(item)
    if any(not t for t in texts):
        raise ValueError(f"malformed unit {item!r}: empty term")
    parsed = [_term(t, item, classes) for t in texts]
    if len(parsed) == 1:
        term, last = parsed[0]
        if term.index is None or last == term.index:
            return [Unit((term,))]
        return [Unit((replace(term, index=i),)) for i in range(term.index, last + 1)]
    for term, last in parsed:
        if last != term.index:
            raise ValueError(f"unit {item!r}: channel ranges cannot be used inside a weighted sum")
        if term.index is None and term.kind in ("channel", "neuron"):
            raise ValueError(f"unit {item!r}: each term of a sum needs a channel index")
    return [Unit(tuple(term for term, _ in parsed))]


def _normalized(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


class ClassNames:
    """A model's class names for the unit parser: name -> index on its class layer, and back."""

    def __init__(self, model):
        from pyviz_fast.engine.models import class_names

        self.model = model
        self.names = class_names(model) if model is not None else None
        self.layer = self._class_layer() if self.names else None

    def _class_layer(self):
        """The last module with one output per class (out_features / out_channels), or None."""
        found = None
        for name, module in self.model.named_modules():
            width = getattr(module, "out_features", None) or getattr(module, "out_channels", None)
            if name and width == len(self.names):
                found = name
        return found

    def _layers(self):
        return (OUTPUT,) + ((self.layer,) if self.layer else ())

    def index(self, layer: str, name: str, spec: str) -> int:
        """The index of class ``name`` on ``layer``; ValueError saying why not and what would do."""
        if self.model is None:
            raise ValueError(f"unit {spec!r} names a class ({name!r}); names are resolved against the model: "
                             "pass model=... (or give the index)")
        if not self.names:
            raise ValueError(f"malformed unit {spec!r}: {name!r} is not an index, and the model has no class names "
                             "to look it up in (give them with --labels FILE on the command line, "
                             "model.class_names in Python)")
        if layer not in self._layers():
            raise ValueError(f"malformed unit {spec!r}: {name!r} is not an index; class names apply to the class "
                             f"layer ({' or '.join(self._layers())}), not {layer!r}")
        wanted = _normalized(name)
        matches = [k for k, n in enumerate(self.names) if _normalized(n) == wanted]
        if len(matches) > 1:
            raise ValueError(f"unit {spec!r}: {len(matches)} classes are called {name!r} "
                             f"(indices {', '.join(map(str, matches))}); give the index")
        if not matches:
            close = difflib.get_close_matches(wanted, [_normalized(n) for n in self.names], n=5, cutoff=0.5)
            hint = f"closest: {', '.join(close)}" if close else \
                f"names: {', '.join(_normalized(n) for n in self.names[:12])}{', ...' if len(self.names) > 12 else ''}"
            raise ValueError(f"unit {spec!r}: no class called {name!r} among the model's {len(self.names)}; {hint}")
        return matches[0]

    def name_of(self, unit) -> str | None:
        """The class name of a one-term unit on the class layer, else None."""
        if not self.names or len(unit.terms) != 1 or unit.layer not in self._layers():
            return None
        index = unit.index
        return self.names[index] if isinstance(index, int) and 0 <= index < len(self.names) else None


def parse_units(spec, model=None):
    """Parse unit specs (see the module docstring for the grammar) into a list of ``Unit``.

    spec: a string (items separated by commas), a ``Unit``, or a list of either.
    model: when given, every layer name is checked against ``model.named_modules()`` and an
    unknown name raises ``ValueError`` listing the closest names. Units naming a whole layer
    ("conv3") keep ``index=None`` here; ``render`` expands them to every channel.

    >>> len(parse_units(["conv3:0-15", "fc:3"]))
    17
    """
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    classes = ClassNames(model)
    units = []
    for item in items:
        if isinstance(item, Unit):
            units.append(item)
        elif isinstance(item, str):
            for piece in _split_top_level(item, ",;"):
                if not piece.strip():
                    raise ValueError(f"malformed unit list {item!r}: empty item")
                units.extend(_parse_item(piece, classes))
        else:
            raise TypeError(f"units must be strings or Unit objects, got {type(item).__name__}: {item!r}")
    if not units:
        raise ValueError("units must name at least one unit, got an empty list")
    if model is not None:
        check_layer_names(units, model)
    return units


def check_layer_names(units, model):
    """Raise ``ValueError`` naming the closest layer names for a layer the model does not have."""
    for unit in units:
        for layer in unit.layers:
            check_layer_name(layer, model, f"in unit {str(unit)!r}")


def check_layer_name(layer, model, where):
    """Raise ``ValueError`` for a layer name ``model`` does not have (``where``: what named it)."""
    names = [n for n, _ in model.named_modules() if n]
    if layer in names or layer == OUTPUT:
        return
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.4)
    hint = (f"; closest: {', '.join(close)}" if close else
            f"; the model has {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}")
    raise ValueError(f"unknown layer {layer!r} {where}{hint}. "
                     "List layers with pyviz_fast.layers(model, input_size)")


def expand_whole_layers(units, channels):
    """The units with each whole layer ('conv3', no index) replaced by one unit per channel.

    channels: {layer: channel count} (or an object with ``.channels``, as ``layers()`` and the
    probed shapes give) for the layers named whole; ValueError when a count is unknown.
    >>> [str(u) for u in expand_whole_layers(parse_units("conv1, fc:3"), {"conv1": 2})]
    ['conv1:0', 'conv1:1', 'fc:3']
    """
    out = []
    for unit in units:
        term = unit.terms[0]
        if len(unit.terms) > 1 or term.index is not None or term.kind not in ("channel", "neuron"):
            out.append(unit)
            continue
        count = channels.get(term.layer)
        if not getattr(count, "batched", True):  # a LayerInfo of a sequence-first layer
            raise ValueError(f"layer {term.layer!r} has no units to render: its output {list(count.shape)} does "
                             "not have the batch first (sequence-first, or windows folded in); pick the block "
                             "around it or a batch-first layer")
        count = getattr(count, "channels", count)
        if not count:
            raise ValueError(f"layer {term.layer!r} has no channels to expand (output shape unknown); "
                             f"name its channels, e.g. {term.layer}:0")
        out.extend(Unit((replace(term, index=c),)) for c in range(count))
    return out
