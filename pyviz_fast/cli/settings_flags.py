"""Command-line flags generated from the engine's ``Settings`` dataclass: one source of truth.

Every field becomes ``--field-name`` (underscores as dashes) with a parser derived from its type
hint and help text taken from the field's ``metadata["help"]`` or, failing that, from the
``name: text`` entries of the class docstring. A new setting therefore appears on every command
by itself. Flags default to "not given", so the dataclass keeps its own defaults. ``--config FILE``
(JSON, or TOML on Python >= 3.11 or with tomli installed) gives settings from a file; flags given
on the command line override it.

>>> parser = argparse.ArgumentParser(); add_settings_flags(parser)
>>> settings_from_args(parser.parse_args(["--steps", "8", "--size", "64,48"]))
Settings(size=(64, 48), steps=8, ...)
"""
import argparse
import dataclasses
import inspect
import json
import re
import typing
from pathlib import Path

from pyviz_fast.engine.model_defaults import with_model_defaults
from pyviz_fast.engine.photos import photo_size
from pyviz_fast.engine.settings import Settings

_NONE_WORDS = ("none", "null", "")


def _top_level(text: str) -> str:
    """``text`` with everything inside parentheses blanked (same length), so '(init_image: ...)'
    inside an entry is not taken for an entry of its own."""
    out, depth = [], 0
    for ch in text:
        depth += ch == "("
        out.append(ch if depth == 0 else " ")
        depth -= ch == ")" and depth > 0
    return "".join(out)


def _field_helps(cls) -> dict[str, str]:
    """{field: text} from docstring entries such as 'steps: optimization steps.' or 'lo / hi: clamp.'

    An entry runs from its label to the next label of a field; a trailing ';' or ',' that joined
    it to the next entry is dropped, and a trailing '; field.' becomes '(see --field)'. A label opening a parenthesis, as in "'image' (init_image: a
    path or tensor)", is not an entry boundary: its field's text is what the parenthesis holds."""
    names = {f.name for f in dataclasses.fields(cls)}
    lines = [line for line in inspect.cleandoc(cls.__doc__ or "").splitlines() if line.strip()]
    body_indent = max((len(line) - len(line.lstrip()) for line in lines), default=0)
    # entries sit at the deepest indentation; section headings above them are left out
    text = " ".join(line.strip() for line in lines if len(line) - len(line.lstrip()) == body_indent)
    label = re.compile(r"(?<![\w.])((?:\w+)(?:\s*/\s*\w+)*):\s")
    marks = [m for m in label.finditer(_top_level(text)) if all(n.strip() in names for n in m.group(1).split("/"))]
    helps = {}
    for k, mark in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        body = text[mark.end():end].strip().rstrip(";,").strip().replace("``", "")
        mention = re.search(r";\s*(\w+)\.?$", body)  # "...; eps." points at another field
        if mention and mention.group(1) in names:
            body = f"{body[:mention.start()]} (see --{mention.group(1).replace('_', '-')})"
        for name in mark.group(1).split("/"):
            helps[name.strip()] = body
    for inner in re.finditer(r"\((\w+):\s((?:[^()]|\([^()]*\))*)\)", text):
        if inner.group(1) in names and inner.group(1) not in helps:
            helps[inner.group(1)] = inner.group(2).strip().replace("``", "")
    return helps


def _syntax(hint) -> str:
    """How a value of type ``hint`` is written on the command line, when that is not obvious."""
    options = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) is typing.Union \
        else [hint]
    tuples = [a for a in options if typing.get_origin(a) is tuple]
    if not tuples:
        return ""
    items = typing.get_args(tuples[0])
    if len(items) == 2 and items[1] is Ellipsis:
        return "; on the command line: values separated by commas, e.g. 0.5,0.5,0.5"
    if len(options) > 1:
        return f"; on the command line: N, or {len(items)} numbers as AxB or A,B"
    return f"; on the command line: {len(items)} numbers as A,B"


def _scalar_parser(kind):
    if kind is bool:
        return _parse_bool
    if kind in (int, float, str):
        return kind
    return str  # object-typed fields (paths, images) come in as text


def _parse_bool(text):
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def value_parser(hint):
    """A function text -> value for a type hint (Optional, Union, Tuple[X, ...], int, float, str)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        options = [a for a in args if a is not type(None)]
        parsers = [value_parser(a) for a in options]
        allows_none = len(options) < len(args)

        def parse_union(text):
            if allows_none and text.strip().lower() in _NONE_WORDS:
                return None
            for parse in parsers:
                try:
                    return parse(text)
                except (ValueError, TypeError):
                    continue
            raise ValueError(f"cannot read {text!r}")
        return parse_union
    if origin is tuple:
        variadic = len(args) == 2 and args[1] is Ellipsis
        items = [_scalar_parser(a) for a in (args[:1] if variadic else args)]

        def parse_tuple(text):
            parts = [p for p in re.split(r"[,x\s()]+", text.strip()) if p]
            if not variadic and len(parts) != len(items):
                raise ValueError(f"expected {len(items)} comma-separated values, got {text!r}")
            return tuple((items[0] if variadic else items[k])(p) for k, p in enumerate(parts))
        return parse_tuple
    return _scalar_parser(hint)


def _argparse_type(name, parse):
    def convert(text):
        try:
            return parse(text)
        except (ValueError, TypeError) as error:
            raise argparse.ArgumentTypeError(f"invalid value for --{name.replace('_', '-')}: {error}")
    convert.__name__ = name  # argparse names the type in its messages
    return convert


def add_setting_flag(parser, name: str, help_text: str) -> None:
    """``--<name>`` of one Settings field for a command without the settings flags, read and
    checked as the field is (the same messages as every other command's flag); default None."""
    hint = typing.get_type_hints(Settings)[name]

    def parse(text):
        return getattr(Settings(**{name: value_parser(hint)(text)}).validate(), name)
    parser.add_argument("--" + name.replace("_", "-"), type=_argparse_type(name, parse), default=None,
                        metavar=name.upper(), help=help_text + _syntax(hint))


def split_size_error(argv) -> str | None:
    """The error for --size given two numbers as two words ('--size 32 40', '--size=32 40'), else None.

    --size takes one value (N, HxW or H,W). A second number after it is refused rather than read
    as the width: it could as well be a unit or layer named by a number (nn.Sequential's '4')."""
    argv = list(argv)
    for k, word in enumerate(argv):
        if word == "--size":
            words = argv[k + 1:k + 3]
        elif word.startswith("--size="):
            words = [word[len("--size="):]] + argv[k + 1:k + 2]
        else:
            continue
        if len(words) == 2 and all(w.isdigit() for w in words):
            height, width = words
            return (f"--size takes one value: N, HxW or H,W (for {height}x{width} px: --size {height}x{width}), "
                    f"got '--size {height} {width}'; a unit or layer named {width!r} goes before --size")
    return None


def add_size_flag(parser, help_text: str) -> None:
    """``--size`` for a command without the settings flags."""
    add_setting_flag(parser, "size", help_text)


def add_settings_flags(parser: argparse.ArgumentParser, exclude=(), settings_cls=Settings, defaults=None,
                       helps=None) -> None:
    """Add one flag per field of ``settings_cls`` to ``parser`` (in a 'render settings' group).

    defaults: {field: value} a command uses instead of the dataclass default (shown in --help;
    pass the same dict to ``settings_from_args``). helps: {field: text} for a field the command
    reads differently from the API (dream's --size)."""
    defaults, helps_override = defaults or {}, helps or {}
    group = parser.add_argument_group("render settings (pyviz_fast.Settings; defaults shown)")
    group.add_argument("--config", dest="config_file", default=None, metavar="FILE",
                       help="settings from a .json or .toml file: a table of the fields below (e.g. steps = 64), "
                            "or a render.json / run.json whose settings are reused; flags override it")
    hints = typing.get_type_hints(settings_cls)
    helps = _field_helps(settings_cls)
    for field in dataclasses.fields(settings_cls):
        if field.name in exclude:
            continue
        default = defaults.get(field.name, field.default if field.default is not dataclasses.MISSING else None)
        text = (helps_override.get(field.name) or field.metadata.get("help")
                or helps.get(field.name, "see pyviz_fast.Settings")).rstrip(". ") + _syntax(hints[field.name])
        flag = "--" + field.name.replace("_", "-")
        common = dict(dest=f"setting_{field.name}", default=argparse.SUPPRESS,
                      help=f"{text} (default: {default!r})".replace("%", "%%"))
        if hints[field.name] is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        else:
            group.add_argument(flag, type=_argparse_type(field.name, value_parser(hints[field.name])),
                               metavar=field.name.upper(), **common)


def settings_overrides(args) -> dict:
    """{field: value} of the settings flags given on the command line."""
    return {key[len("setting_"):]: value for key, value in vars(args).items() if key.startswith("setting_")}


def _load_table(path: Path) -> dict:
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as tomllib
            except ModuleNotFoundError:
                raise ValueError(f"--config {str(path)!r}: reading TOML needs Python 3.11+ or the tomli package; "
                                 "use a .json file") from None
        return tomllib.loads(path.read_text(encoding="utf-8"))
    if path.suffix.lower() == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    raise ValueError(f"--config {str(path)!r} must be a .json or .toml file")


def read_settings_file(path, settings_cls=Settings) -> dict:
    """{field: value} from a settings file: a table of Settings fields, or a render.json / run.json
    (whose "settings" are used; their recorded extras, such as an atlas's weights, are skipped).
    ValueError naming the file and what is wrong."""
    path = Path(path)
    try:
        table = _load_table(path)
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--config {str(path)!r} cannot be read ({error})") from None
    except ValueError as error:  # JSON and TOML syntax errors subclass it
        raise ValueError(f"--config {str(path)!r}: {error}") from None
    if not isinstance(table, dict):
        raise ValueError(f"--config {str(path)!r} must hold a table of settings, got {type(table).__name__}")
    fields = [f.name for f in dataclasses.fields(settings_cls)]
    if isinstance(table.get("settings"), dict):
        table = {k: v for k, v in table["settings"].items() if k in fields}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ValueError(f"--config {str(path)!r}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(fields)}")
    hints = typing.get_type_hints(settings_cls)
    return {k: _value_as_read(v, hints[k]) for k, v in table.items()}


_NON_FINITE = ("inf", "-inf", "nan")


def _value_as_read(value, hint):
    """A settings file's value as the field takes it: lists as tuples; "inf", "-inf", "nan" as
    floats where the field is a number (a run.json is strict JSON, which has no Infinity)."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, str) and value.lower() in _NON_FINITE and float in (hint, *typing.get_args(hint)):
        return float(value)
    return value


def given_settings(args) -> dict:
    """{field: value} the user gave: the --config file's, overridden by the flags on the command line."""
    config = getattr(args, "config_file", None)
    return {**(read_settings_file(config) if config else {}), **settings_overrides(args)}


def settings_from_args(args, defaults=None, **fixed) -> Settings:
    """A validated Settings: the command's ``defaults``, then what the user gave (``given_settings``),
    then the ``fixed`` values the command imposes. Raises ValueError / TypeError naming the bad field."""
    return Settings(**{**(defaults or {}), **given_settings(args), **fixed}).validate()


def settings_for_model(args, settings, model) -> Settings:
    """``settings`` with the model's own defaults (``engine/model_defaults.py``: its declared input
    size, Fourier facets on a patch model) where the user gave no value."""
    return with_model_defaults(settings, model, set(given_settings(args)))


def fit_size(size, hw) -> tuple:
    """(H, W) for ``--size`` and a photo of size hw: an int is the shorter side (aspect kept), a pair exact."""
    if not isinstance(size, int):
        return tuple(size)
    scale = size / min(hw)
    return tuple(max(1, round(side * scale)) for side in hw)


def settings_at_image_size(args, defaults, image, model, **fixed) -> Settings:
    """``settings_from_args`` at the size of the photo ``image`` ([C, H, W]): its own (or the one
    ``model`` declares it runs at, ``photo_size``), or with --size (flag or --config) N its shorter
    side (aspect ratio kept), HxW exact (``fit_size``); then the model's defaults where the user
    gave no value (``settings_for_model``: one octave at a model's one declared size)."""
    settings = settings_from_args(args, defaults, **fixed)
    hw = photo_size(image, model)
    settings = settings.replace(size=fit_size(settings.size, hw) if "size" in given_settings(args) else hw)
    return settings_for_model(args, settings, model).validate()
