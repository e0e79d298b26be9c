"""Unit lists for the commands: parse specs against a model and expand whole layers to channels."""
from pyviz_fast.cli.common import CliError


def expand_units(specs, model, infos) -> list:
    """Units for ``specs`` (strings in the API's unit syntax), whole layers expanded to one unit
    per channel, every layer and channel index checked; CliError on the first bad one.

    infos: pyviz_fast.layers(model, ...) of the model at the render size. A spec that is exactly
    a layer's name is that whole layer, whatever characters the name holds (``a<b``, ``conv-1``).
    >>> [str(u) for u in expand_units(["conv1:0-1", "fc:3"], model, infos)]
    ['conv1:0', 'conv1:1', 'fc:3']
    """
    from pyviz_fast.engine.units import Unit, expand_whole_layers, parse_units

    names = {info.name for info in infos}
    channels = {info.name: info.channels for info in infos}
    try:
        units = parse_units([Unit.channel(s, None) if s in names else s for s in specs], model=model)
        for unit in units:
            for term in unit.terms:
                count = channels.get(term.layer)
                if term.index is not None and count is not None and not 0 <= term.index < count:
                    raise ValueError(f"unit {str(unit)!r}: layer {term.layer!r} has {count} channels "
                                     f"(0-{count - 1}); got channel {term.index}")
        return expand_whole_layers(units, {info.name: info for info in infos})
    except (ValueError, TypeError) as error:
        raise CliError(str(error)) from None
