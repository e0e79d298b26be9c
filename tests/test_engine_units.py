"""Unit strings: the grammar of parse_units, round trips, and the errors for malformed specs."""
import pytest

from engine_nets import tiny_cnn
from pyviz_fast.engine.units import Term, Unit, parse_units


@pytest.mark.parametrize("spec, expected", [
    ("conv3:7", ["conv3:7"]),
    ("conv3:0-2", ["conv3:0", "conv3:1", "conv3:2"]),
    ("conv3", ["conv3"]),
    ("conv3:7@neuron", ["conv3:7@neuron"]),
    ("conv3:7@neuron(3, 4)", ["conv3:7@neuron(3,4)"]),
    ("conv3@deepdream", ["conv3@deepdream"]),
    ("fc:207@class", ["fc:207@class"]),
    ("-conv3:7", ["-conv3:7"]),
    ("0.5*conv3:1 + 0.5*conv3:2", ["0.5*conv3:1+0.5*conv3:2"]),
    ("conv3:1 - conv3:2", ["conv3:1+-conv3:2"]),
    ("a.b:1, c.d:2-3", ["a.b:1", "c.d:2", "c.d:3"]),
    ("l@direction(1, 0, -0.5)", ["l@direction(1.0,0.0,-0.5)"]),
    ("1e-3*c:1+c:2", ["0.001*c:1+c:2"]),
    ("0:3", ["0:3"]),
])
def test_parse_and_round_trip(spec, expected):
    units = parse_units(spec)
    assert [str(u) for u in units] == expected
    assert [parse_units(str(u))[0] for u in units] == units


def test_unit_fields_and_lists():
    units = parse_units(["inception4a:7", Unit.neuron("conv", 2, (1, 1)), "fc:3@class"])
    assert [(u.layer, u.kind, u.index) for u in units] == [
        ("inception4a", "channel", 7), ("conv", "neuron", 2), ("fc", "class", 3)]
    total = parse_units("2*a:1+-b@deepdream")[0]
    assert total.kind == "sum" and total.layers == ("a", "b")
    assert total.terms == (Term("a", "channel", 1, weight=2.0), Term("b", "deepdream", weight=-1.0))
    assert str(-Unit.channel("a", 1)) == "-a:1"


@pytest.mark.parametrize("spec, message", [
    ("conv3:", "malformed unit"),
    ("conv3:5-2", "range 5-2 is empty"),
    ("conv3@nueron", "did you mean 'neuron'"),
    ("c:1-3+d:2", "ranges cannot be used inside a weighted sum"),
    ("", "empty item"),
    ("a,,b", "empty item"),
    ("c@neuron(a)", "must be numbers"),
    ("c:1@deepdream", "takes no channel index"),
    ("fc@class", "needs an index"),
    ("c@direction", "needs its vector"),
    ("c:1@deepdream(2)", "takes no arguments"),
    ("a+b:1", "needs a channel index"),
    ("conv 3:1", "malformed unit"),
])
def test_malformed_specs_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_units(spec)


def test_wrong_types():
    with pytest.raises(TypeError, match="strings or Unit"):
        parse_units([3])
    with pytest.raises(ValueError, match="at least one unit"):
        parse_units([])


def test_unknown_layer_lists_closest_names():
    model = tiny_cnn(tail=None)
    with pytest.raises(ValueError, match=r"unknown layer '4\.3'.*closest: 4\.2"):
        parse_units("4.3:1", model)
    assert parse_units("output:1", model)[0].layer == "output"
