"""A gallery of facets and MaCo RGBA variants as a user sees it (headless Chromium, file://): a
unit's facets side by side in its cell and in its detail view, next to its top dataset examples,
and the attribution map toggled on over a checkerboard, with no page errors."""
import pytest

from pyviz_fast.audit import run_atlas
from test_audit import UNITS, FakeGrounder, FakeRenderer, job
from test_gallery_browser import open_gallery

ALL_LOADED = "sel => [...document.querySelectorAll(sel)].every(i => i.complete && i.naturalWidth > 0)"


@pytest.fixture(scope="module")
def facet_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("facets")
    run_atlas(UNITS, FakeRenderer(facets=3, alpha=True), job(root, facets=3, grounder=FakeGrounder()))
    return root


def test_cells_show_every_facet_side_by_side(browser, facet_run):
    page, errors = open_gallery(browser, facet_run)
    strip = page.eval_on_selector('#grid .cell[data-unit="conv1:0"]', """cell => [...cell.querySelectorAll(
        '.facet-strip img')].map(i => [i.getAttribute('src'), i.getBoundingClientRect().left,
        i.getBoundingClientRect().top, i.getBoundingClientRect().width])""")
    assert [src for src, *_ in strip] == ["images/conv1/0.png", "images/conv1/0~facet1.png", "images/conv1/0~facet2.png"]
    lefts, tops, widths = zip(*[geometry for _, *geometry in strip])
    assert lefts[0] < lefts[1] < lefts[2] and len(set(tops)) == 1 and min(widths) >= 80  # a row, full size
    cells = page.eval_on_selector_all("#grid .cell", "nodes => nodes.map(n => n.getBoundingClientRect())"
                                                     ".map(r => [r.left, r.right, r.top])")
    assert all(a[1] <= b[0] for a, b in zip(cells, cells[1:]) if a[2] == b[2])  # wider cells do not overlap
    page.wait_for_function(ALL_LOADED, arg="#grid img")
    assert page.eval_on_selector('#grid .cell[data-unit="conv1:5"]', "c => !!c.querySelector('.noimg')")  # failed
    assert errors == []


def test_detail_shows_facets_beside_top_examples_and_toggles_the_alpha_view(browser, facet_run):
    page, errors = open_gallery(browser, facet_run, "#unit=conv2%3A1")
    page.wait_for_selector(".pictures.facets .picture img")
    facets = page.eval_on_selector_all(".pictures.facets .picture img", "nodes => nodes.map(i => i.getAttribute('src'))")
    assert facets == ["images/conv2/1.png", "images/conv2/1~facet1.png", "images/conv2/1~facet2.png"]
    captions = page.eval_on_selector_all(".pictures.facets figcaption", "nodes => nodes.map(n => n.textContent)")
    assert captions[:3] == ["facet 0 · obj 2", "facet 1 · obj 2", "facet 2 · obj 2"]
    beside = page.eval_on_selector_all(".pictures.facets .beside .example img", "nodes => nodes.map(i => i.getAttribute('src'))")
    assert beside and all(src.startswith("examples/conv2/1/top") for src in beside)  # the top dataset examples
    page.wait_for_function(ALL_LOADED, arg="#detail img")
    toggle = page.locator("#alpha")
    assert toggle.get_attribute("aria-pressed") == "false"
    toggle.click()
    page.wait_for_function(ALL_LOADED, arg="#detail .picture img")
    shown = page.eval_on_selector_all(".pictures.facets .picture img", """nodes => nodes.map(i => [i.getAttribute('src'),
        i.classList.contains('checker'), getComputedStyle(i).backgroundImage])""")
    assert [src for src, _, _ in shown] == [src.replace(".png", "~rgba.png") for src in facets]
    assert all(checker and "conic-gradient" in background for _, checker, background in shown)
    assert toggle.get_attribute("aria-pressed") == "true"
    page.keyboard.press("ArrowRight")  # the next unit's facets replace these, still showing the maps
    page.wait_for_selector('.pictures.facets .picture img[src="images/conv2/2~rgba.png"]')
    assert page.locator("#alpha").count() == 1 and page.locator("#alpha").get_attribute("aria-pressed") == "true"
    page.locator("#alpha").click()
    assert page.eval_on_selector_all(".pictures.facets .picture img", "nodes => nodes.map(i => i.getAttribute('src'))") \
        == [src.replace("conv2/1", "conv2/2") for src in facets]
    assert errors == []


def test_a_plain_unit_of_a_maco_run_gets_the_toggle_without_facets(browser, tmp_path):
    run_atlas(UNITS[:3], FakeRenderer(size=64, alpha=True), job(tmp_path))
    page, errors = open_gallery(browser, tmp_path, "#unit=conv1%3A1")
    page.wait_for_selector("#alpha")
    page.click("#alpha")
    page.wait_for_function(ALL_LOADED, arg="#detail .picture img")
    assert page.eval_on_selector("#detail .picture img", "i => i.getAttribute('src')") == "images/conv1/1~rgba.png"
    assert page.locator(".pictures.facets").count() == 0 and errors == []
