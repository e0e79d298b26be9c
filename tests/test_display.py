"""Notebook display of a RenderResult: the HTML grid (inlined PNGs, captions, cap) and show()."""
import base64
import io
import re

import pytest
import torch
from PIL import Image

import pyviz_fast as pvf
from pyviz_fast.engine.display import ImageGrid
from pyviz_fast.engine.units import Unit


def _result(n, status=None):
    images = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    status = status or ["ok"] * n
    return pvf.RenderResult(images=images, units=[Unit.channel("conv2", i) for i in range(n)],
                            objective=torch.arange(n, dtype=torch.float32) + 0.5, trajectory=torch.zeros(n, 2),
                            seeds=list(range(n)), status=status,
                            reasons=["" if s == "ok" else "gradient was NaN" for s in status],
                            timings={"total": 1.25}, info={"backend": "reference"})


def _pngs(markup):
    return [Image.open(io.BytesIO(base64.b64decode(data)))
            for data in re.findall(r'src="data:image/png;base64,([^"]+)"', markup)]


def test_repr_html_inlines_each_image_with_its_unit_objective_and_status():
    res = _result(3, status=["ok", "nonfinite", "ok"])
    markup = res._repr_html_()
    pngs = _pngs(markup)
    assert [png.size for png in pngs] == [(8, 8)] * 3
    assert pngs[1].tobytes() == res.to_pil(1).tobytes()
    for i, value in enumerate(["0.5", "1.5", "2.5"]):
        assert f"conv2:{i}<br>{value} " in markup
    assert "1.5 nonfinite" in markup and 'title="gradient was NaN"' in markup
    assert "RenderResult(3 units, 3x8x8, 2 ok, backend reference, 1.2 s)" in markup
    assert repr(res) == "RenderResult(3 units, 3x8x8, 2 ok, backend reference, 1.2 s)"


def test_grid_shows_at_most_limit_images_and_says_how_many_are_left_out():
    res = _result(10)
    markup = res.to_html_grid(cols=4, limit=3)._repr_html_()
    assert len(_pngs(markup)) == 3
    assert "7 more not shown (limit=3)" in markup
    assert "repeat(4,128px)" in markup
    assert "more not shown" not in res.to_html_grid(limit=10)._repr_html_()


def test_show_outside_a_notebook_returns_the_grid():
    grid = pvf.show(_result(2), cols=2)
    assert isinstance(grid, ImageGrid) and len(_pngs(grid._repr_html_())) == 2
    assert isinstance(_result(2).show(), ImageGrid)
    assert len(_pngs(pvf.show([Image.new("RGB", (4, 4))] * 5, limit=4)._repr_html_())) == 4


@pytest.mark.parametrize("layout", [{"cols": 0}, {"limit": -1}, {"size": 0}])
def test_bad_layout_names_the_bad_value(layout):
    with pytest.raises(ValueError, match="cols and size must be >= 1"):
        _result(1).to_html_grid(**layout)


def test_to_pil_converts_only_its_own_image(monkeypatch):
    from pyviz_fast.engine import result
    res, converted = _result(5), []
    convert = result.images_to_uint8
    monkeypatch.setattr(result, "images_to_uint8", lambda images: converted.append(len(images)) or convert(images))
    assert res.to_pil(-1).tobytes() == Image.fromarray(convert(res.images)[4]).tobytes()
    assert converted == [1]  # not all 5 images, on every call
