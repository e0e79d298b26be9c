"""The atlas gallery as a user sees it: headless Chromium (Debian's) opening index.html from file://.

A fake renderer's run gives a small gallery with dead and failed units; a generated manifest gives
one of 20,000 units; hostile layer names check that nothing from the data runs as HTML or code.
"""
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from browser import collect_page_errors
from pyviz_fast.audit import run_atlas
from pyviz_fast.audit.gallery import gallery_links
from pyviz_fast.engine.units import Unit
from test_audit import UNITS, FakeGrounder, FakeRenderer, job

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_gallery import synthetic_atlas  # noqa: E402  (the benchmark's generated atlas)

HOSTILE = ['<img src=x onerror="window.__pwned=1">', '"><script>window.__pwned=1</script>', "__proto__",
           "javascript:window.__pwned=1", ".."]


def open_gallery(browser, root, fragment="", **context):
    page = browser.new_context(**(context or {"viewport": {"width": 1280, "height": 800}})).new_page()
    errors = collect_page_errors(page)
    page.goto((Path(root) / "index.html").as_uri() + fragment)
    page.wait_for_selector("#grid .cell")
    return page, errors


def cells(page):
    return page.eval_on_selector_all("#grid .cell", "nodes => nodes.map(n => n.dataset.unit)")


def shown_by_status(page, statuses):
    """{status filter: the units the grid shows with it}."""
    shown = {}
    for status in statuses:
        page.select_option("#status", status)
        shown[status] = sorted(cells(page))
    return shown


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery")
    run_atlas(UNITS, FakeRenderer(size=128), job(root))
    return root


def test_page_loads_without_errors_and_every_image_and_link_resolves(browser, small_run):
    links = gallery_links(small_run)
    assert links and [link for link in links if not (small_run / link).is_file()] == []
    page, errors = open_gallery(browser, small_run)
    assert sorted(cells(page)) == sorted(str(u) for u in UNITS)
    page.wait_for_function("[...document.querySelectorAll('#grid img')].every(i => i.complete)")
    broken = page.eval_on_selector_all("#grid img", "nodes => nodes.filter(i => !i.naturalWidth).map(i => i.src)")
    assert broken == []
    assert page.eval_on_selector("#grid img", "i => i.getAttribute('src')").startswith("thumbs/")
    assert errors == []


def test_filter_search_and_sort(browser, small_run):
    page, errors = open_gallery(browser, small_run)
    assert shown_by_status(page, ["dead", "stalled", "flat", "failed", "ok", "all"]) == {
        "dead": ["conv1:3", "conv2:3"], "stalled": ["conv1:4", "conv2:4"], "flat": ["conv1:6"],
        "failed": ["conv1:5", "conv2:5"],
        "ok": ["conv1:0", "conv1:1", "conv1:2", "conv1:6", "conv2:0", "conv2:1", "conv2:2"],  # flat is no failure
        "all": sorted(str(u) for u in UNITS)}
    page.select_option("#layer", "conv2")
    assert len(cells(page)) == 6 and "layer=conv2" in page.url
    page.select_option("#layer", "")
    page.fill("#q", "conv1:6")
    page.wait_for_function("document.querySelectorAll('#grid .cell').length === 1")
    assert cells(page) == ["conv1:6"]
    page.fill("#q", "")
    page.select_option("#sort", "value-desc")  # the fake objective ends at 1 + index
    page.wait_for_function("document.querySelectorAll('#grid .cell').length === 13")
    first = page.eval_on_selector_all("#grid .cell", "nodes => nodes.sort((a, b) => "
                                      "parseFloat(a.style.top) - parseFloat(b.style.top) || "
                                      "parseFloat(a.style.left) - parseFloat(b.style.left)).map(n => n.dataset.unit)")
    assert first[0] == "conv1:6" and "sort=value-desc" in page.url
    assert errors == []


def test_detail_view_with_curve_numbers_prev_next_and_a_linkable_address(browser, small_run):
    page, errors = open_gallery(browser, small_run, "#layer=conv1")
    page.click('#grid .cell[data-unit="conv1:2"]')
    page.wait_for_selector("#detail svg.curve polyline")
    assert page.inner_text("#detail h2") == "conv1:2"
    text = page.inner_text("#detail")
    for label in ("final objective", "start", "max", "rise", "status"):
        assert label in text
    assert page.eval_on_selector("#detail img.full", "i => i.complete && i.naturalWidth") == 128
    page.click("#next")
    assert page.inner_text("#detail h2") == "conv1:3" and "unit=conv1%3A3" in page.url
    assert "dead in optimization\tyes" in page.inner_text("#detail")
    page.keyboard.press("ArrowRight")
    assert "dead in optimization\tno, stalled: it fires (ends at 0.5)" in page.inner_text("#detail")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("text=synthetic failure")  # conv1:5 failed: its reason is shown
    linked = page.url
    page.keyboard.press("ArrowRight")
    assert "picture\tflat: one colour" in page.inner_text("#detail")  # conv1:6's grey
    page.keyboard.press("Escape")
    assert page.is_hidden("#detail") and "unit=" not in page.url
    again, more_errors = open_gallery(browser, small_run, "#" + linked.split("#", 1)[1])
    again.wait_for_selector("#detail h2")
    assert again.inner_text("#detail h2") == "conv1:5"
    assert errors == [] and more_errors == []


def test_hostile_layer_names_stay_inert_text(browser, tmp_path):
    units = [Unit.channel(layer, c) for layer in HOSTILE for c in range(2)]
    run_atlas(units, FakeRenderer(), job(tmp_path))
    assert [link for link in gallery_links(tmp_path) if not (tmp_path / link).is_file()] == []
    page, errors = open_gallery(browser, tmp_path)
    page.wait_for_timeout(200)
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("Object.getPrototypeOf(window.PVF_ATLAS) === Object.prototype")
    options = page.eval_on_selector_all("#layer option", "nodes => nodes.map(n => n.value)")
    assert options == [""] + HOSTILE
    shown = page.eval_on_selector_all("#grid .cell .layer", "nodes => nodes.map(n => n.textContent)")
    assert sorted(set(shown)) == sorted(HOSTILE)
    page.select_option("#layer", HOSTILE[0])
    assert len(cells(page)) == 2
    page.click("#grid .cell")
    page.wait_for_selector("#detail svg.curve")
    assert page.evaluate("window.__pwned") is None and errors == []


def test_twenty_thousand_units_load_and_scroll_quickly(browser, tmp_path):
    """Timed inside the page (from navigation to the first cells, then from the scroll to the last
    unit's cell), so the test driver's round trips on a loaded machine do not count."""
    records = synthetic_atlas(tmp_path, 20_000)
    assert (tmp_path / "index.html").stat().st_size < 200_000
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors = collect_page_errors(page)
    page.add_init_script("""new MutationObserver((changes, observer) => {
        if (document.querySelector('#grid .cell')) { window.__firstCells = performance.now(); observer.disconnect(); }
    }).observe(document, {childList: true, subtree: true});""")
    page.goto((tmp_path / "index.html").as_uri())
    page.wait_for_selector("#grid .cell")
    scrolled = page.evaluate("""last => new Promise(done => {
        const started = performance.now();
        document.getElementById('scroller').scrollTop = 1e9;
        const check = () => document.querySelector(`#grid .cell[data-unit="${last}"]`)
            ? done(performance.now() - started) : requestAnimationFrame(check);
        check(); })""", records[-1]["unit"])
    first = page.evaluate("window.__firstCells")
    print(f"20,000 units: first cells {first:.0f} ms after navigation, last unit drawn {scrolled:.0f} ms after the scroll")
    assert page.evaluate("document.getElementsByTagName('*').length") < 3000  # only what is in view
    assert first + scrolled < 2000, f"loading and scrolling 20,000 units took {first + scrolled:.0f} ms"
    assert errors == []


def test_phone_width_keeps_captions_readable_and_indices_visible(browser, small_run, tmp_path):
    phone = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
    page, errors = open_gallery(browser, small_run, "", **phone)
    page.screenshot(path=str(tmp_path / "phone.png"))
    sizes = page.eval_on_selector_all(
        "#grid .caption div", "nodes => nodes.map(n => parseFloat(getComputedStyle(n).fontSize) * visualViewport.scale)")
    assert sizes and min(sizes) >= 10
    clipped = page.eval_on_selector_all("#grid .cell", """cells => cells.filter(c => {
        const box = c.getBoundingClientRect(), idx = c.querySelector('.idx').getBoundingClientRect();
        return idx.right > box.right || idx.left < box.left; }).length""")
    assert clipped == 0
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    assert errors == []


def test_long_layer_names_never_hide_the_index(browser, tmp_path):
    layer = "layer3.0.downsample.very_long_submodule_name"
    run_atlas([Unit.channel(layer, 17)], FakeRenderer(), job(tmp_path))
    page, _ = open_gallery(browser, tmp_path)
    idx = page.eval_on_selector("#grid .cell .idx", "n => n.textContent")
    assert idx == ":17"
    inside = page.eval_on_selector("#grid .cell", """c => { const b = c.getBoundingClientRect(),
        i = c.querySelector('.idx').getBoundingClientRect(); return i.right <= b.right && i.width > 0; }""")
    assert inside
    page.goto((tmp_path / "index.html").as_uri() + "#layer=" + quote(layer))
    page.wait_for_selector("#grid .cell")
    assert page.eval_on_selector("#grid .cell .idx", "n => n.textContent") == "#17"


def test_grounded_gallery_shows_examples_percentiles_and_warnings(browser, tmp_path):
    run_atlas(UNITS, FakeRenderer(), job(tmp_path, grounder=FakeGrounder()))
    page, errors = open_gallery(browser, tmp_path)
    assert "grounded on fake:6" in page.inner_text("#summary")
    assert "pct 99" in page.inner_text('#grid .cell[data-unit="conv1:0"]')
    assert shown_by_status(page, ["low", "datadead", "warn"]) == {
        "low": ["conv1:1", "conv2:1"], "datadead": ["conv1:2", "conv2:2"], "warn": ["conv1:4", "conv2:4"]}
    page.select_option("#sort", "pct-asc")
    page.select_option("#status", "all")
    page.click('#grid .cell[data-unit="conv2:4"]')
    page.wait_for_selector("#detail .examples img")
    text = page.inner_text("#detail")
    assert "Top examples" in text and "Bottom examples" in text and "class1" in text
    assert "top 0.2 · random 0.5" in text and "percentile of the picture" in text
    page.wait_for_function("[...document.querySelectorAll('#detail img')].every(i => i.complete)")
    assert page.eval_on_selector_all("#detail img", "nodes => nodes.filter(i => !i.naturalWidth).length") == 0
    assert errors == []


def test_the_page_of_a_run_in_progress_reloads_its_data(browser, tmp_path):
    from pyviz_fast.audit.gallery import write_gallery
    records = [{"unit": f"a:{c}", "layer": "a", "index": c, "status": "ok", "file": None, "value": 1.0} for c in range(4)]
    info = {"model": "m", "seed": 0, "settings_hash": "x", "settings": {}}
    write_gallery(tmp_path, records[:2], info, {}, complete=False)
    page, errors = open_gallery(browser, tmp_path)
    assert "in progress" in page.inner_text("#summary") and page.inner_text("#count") == "2 of 2 units"
    write_gallery(tmp_path, records, info, {}, complete=True)  # the run goes on, then finishes
    page.wait_for_function("document.getElementById('count').textContent === '4 of 4 units'", timeout=20_000)
    assert "in progress" not in page.inner_text("#summary") and errors == []


def test_class_names_show_in_cells_detail_and_search(browser, tmp_path):
    """The atlas's cells and detail view showed fc:5 for the class 'rings' (render names it)."""
    from pyviz_fast.audit.gallery import write_gallery
    records = [{"unit": f"fc:{c}", "layer": "fc", "index": c, "status": "ok", "file": None, "value": 1.0,
                "class": name} for c, name in enumerate(["circle", "rings"])]
    write_gallery(tmp_path, records, {"model": "m", "seed": 0, "settings_hash": "x", "settings": {}}, {})
    page, errors = open_gallery(browser, tmp_path, "#unit=fc%3A1")
    assert "rings" in page.inner_text('#grid .cell[data-unit="fc:1"]')
    assert "fc:1 (rings)" in page.inner_text("#detail h2")
    page.keyboard.press("Escape")
    page.fill("#q", "circle")
    page.wait_for_function("document.querySelectorAll('#grid .cell').length === 1")
    assert cells(page) == ["fc:0"] and errors == []
