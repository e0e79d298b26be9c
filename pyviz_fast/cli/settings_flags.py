"""Command-line flags generated from the engine's ``Settings`` dataclass: one source of truth.

Every field becomes ``--field-name`` (underscores as dashes) with a parser derived from its type
hint and help text taken from the field's ``metadata["help"]`` or, failing that, from the
``name: text`` entries of the class docstring. A new setting therefore appears on every command
by itself. Flags default to "not given", so the dataclass keeps its own defaults.

>>> parser = argparse.ArgumentParser(); add_settings_flags(parser)
>>> settings_from_args(parser.parse_args(["--steps", "8", "--size", "64,48"]))
Settings(size=(64, 48), steps=8, ...)
"""
import argparse
import dataclasses
import inspect
import re
import typing

from pyviz_fast.engine.settings import Settings

_NONE_WORDS = ("none", "null", "")


def _field_helps(cls) -> dict[str, str]:
    """{field: text} from docstring entries such as 'steps: optimization steps.' or 'lo / hi: clamp.'"""
    names = {f.name for f in dataclasses.fields(cls)}
    lines = [line for line in inspect.cleandoc(cls.__doc__ or "").splitlines() if line.strip()]
    body_indent = max((len(line) - len(line.lstrip()) for line in lines), default=0)
    # entries sit at the deepest indentation; section headings above them are left out
    text = " ".join(line.strip() for line in lines if len(line) - len(line.lstrip()) == body_indent)
    label = re.compile(r"(?<![\w.])((?:\w+)(?:\s*/\s*\w+)*):\s")
    marks = [m for m in label.finditer(text) if all(n.strip() in names for n in m.group(1).split("/"))]
    helps = {}
    for k, mark in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        body = text[mark.end():end].strip()
        for name in mark.group(1).split("/"):
            helps[name.strip()] = body
    return helps


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
            parts = [p for p in re.split(r"[,x\s]+", text.strip()) if p]
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


def add_settings_flags(parser: argparse.ArgumentParser, exclude=(), settings_cls=Settings, defaults=None) -> None:
    """Add one flag per field of ``settings_cls`` to ``parser`` (in a 'render settings' group).

    defaults: {field: value} a command uses instead of the dataclass default (shown in --help;
    pass the same dict to ``settings_from_args``)."""
    defaults = defaults or {}
    group = parser.add_argument_group("render settings (pyviz_fast.Settings; defaults shown)")
    hints = typing.get_type_hints(settings_cls)
    helps = _field_helps(settings_cls)
    for field in dataclasses.fields(settings_cls):
        if field.name in exclude:
            continue
        default = defaults.get(field.name, field.default if field.default is not dataclasses.MISSING else None)
        text = field.metadata.get("help") or helps.get(field.name, "see pyviz_fast.Settings")
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


def settings_from_args(args, defaults=None, **fixed) -> Settings:
    """A validated Settings: the command's ``defaults``, overridden by the given flags, then the
    ``fixed`` values the command imposes. Raises ValueError / TypeError naming the bad field."""
    return Settings(**{**(defaults or {}), **settings_overrides(args), **fixed}).validate()
