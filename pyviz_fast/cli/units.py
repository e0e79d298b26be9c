"""Unit lists for the commands: parse specs against a model and expand whole layers to channels."""
from pyviz_fast.cli.common import CliError


def expand_units(specs, model, infos) -> list:
    """Units for ``specs`` (strings in the API's unit syntax), whole layers expanded to one unit
    per channel, every term checked against its layer (channel, neuron position, class layer,
    direction length) as the render will; CliError on the first bad one.

    infos: pyviz_fast.layers(model, ...) of the model at the render size. A spec that is exactly
    a layer's name is that whole layer, whatever characters the name holds (``a<b``, ``conv-1``).
    >>> [str(u) for u in expand_units(["conv1:0-1", "fc:3"], model, infos)]
    ['conv1:0', 'conv1:1', 'fc:3']
    """
    from pyviz_fast.engine.layout import Activation
    from pyviz_fast.engine.objectives import check_term
    from pyviz_fast.engine.units import Unit, expand_whole_layers, parse_units

    by_name = {info.name: info for info in infos}
    try:
        units = parse_units([Unit.channel(s, None) if s in by_name else s for s in specs], model=model)
        for unit in units:
            for term in unit.terms:
                info = by_name.get(term.layer)
                # checked here, as the render will: an atlas fails before its run.json holds the bad command
                if info is not None and info.layout is not None:
                    check_term(term, unit, Activation(info.shape, info.layout))
        return expand_whole_layers(units, by_name)
    except (ValueError, TypeError) as error:
        raise CliError(str(error)) from None
