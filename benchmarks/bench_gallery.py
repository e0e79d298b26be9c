"""The atlas gallery at scale: a generated atlas of N units opened in headless Chromium (Debian's).

    PYTHONPATH=. python benchmarks/bench_gallery.py --units 20000 --out /tmp/gallery-20k
    PYTHONPATH=/path/to/other/checkout python benchmarks/bench_gallery.py --out /tmp/gallery-old  # a baseline

Writes the gallery of N generated units (16 layers, one shared 64 px image) with the
``write_gallery`` of whichever pyviz_fast is importable, then loads it ``--runs`` times and prints
medians: bytes of index.html and of everything the page loads at start (index.html and gallery/*,
the per-layer detail files excepted), DOMContentLoaded, first
paint and first contentful paint (Chromium's paint timings), the time until the first unit cells
exist, the DOM element count, and the seconds for a viewport and a full-page screenshot. Nothing
is asserted; on a shared machine compare figures of one invocation.
"""
import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def synthetic_atlas(root, count, layers=16):
    """Write the gallery of ``count`` generated units (one shared image), as a large audit would."""
    from pyviz_fast.audit.gallery import write_gallery

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (90, 140, 200)).save(root / "images" / "one.png")
    per_layer = count // layers
    records = [{"unit": f"layer{k}.block:{c}", "layer": f"layer{k}.block", "index": c, "value": (c * 7919 % 1000) / 100,
                "activation": {"start": 0.0, "max": 1.0 + c % 5, "rise": 1.0 + c % 5}, "status": "ok",
                "dead": c % 97 == 0, "file": "images/one.png", "thumb": None, "curve": [0, 0.5, 1.0]}
               for k in range(layers) for c in range(per_layer)]
    write_gallery(root, records, {"model": "synthetic", "seed": 0, "settings_hash": "x", "settings": {}}, {})
    return records


def measure(browser, root: Path) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    started = time.perf_counter()
    page.goto((root / "index.html").as_uri(), wait_until="domcontentloaded")
    page.wait_for_selector("#grid .cell, figure", timeout=120_000)
    cells = time.perf_counter() - started
    timing = page.evaluate("""() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const paint = Object.fromEntries(performance.getEntriesByType('paint').map(p => [p.name, p.startTime]));
        return {dcl: nav.domContentLoadedEventEnd, fp: paint['first-paint'], fcp: paint['first-contentful-paint'],
                elements: document.getElementsByTagName('*').length};
    }""")
    shot = time.perf_counter()
    page.screenshot()
    viewport_shot = time.perf_counter() - shot
    shot = time.perf_counter()
    try:
        page.screenshot(full_page=True, timeout=120_000)
        full_shot = time.perf_counter() - shot
    except Exception as error:  # noqa: BLE001  (a page too tall for one capture is a result too)
        full_shot = f"failed: {type(error).__name__}"
    page.close()
    return {"cells_s": cells, "dcl_ms": timing["dcl"], "first_paint_ms": timing["fp"], "fcp_ms": timing["fcp"],
            "elements": timing["elements"],
            "viewport_screenshot_s": viewport_shot, "full_page_screenshot_s": full_shot}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=20_000)
    parser.add_argument("--out", required=True, help="directory for the generated atlas (replaced)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from browser import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    import pyviz_fast

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    synthetic_atlas(out, args.units)
    html_bytes = (out / "index.html").stat().st_size
    start_files = [out / "index.html"] + [path for path in (out / "gallery").glob("*") if path.is_file()]
    start_bytes = sum(path.stat().st_size for path in start_files)  # what the page loads before it draws
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        runs = [measure(browser, out) for _ in range(args.runs)]
        browser.close()
    summary = {"pyviz_fast": pyviz_fast.__file__, "units": args.units, "index_html_bytes": html_bytes,
               "start_bytes": start_bytes}
    for key in runs[0]:
        values = [r[key] for r in runs]
        summary[key] = statistics.median(values) if all(isinstance(v, (int, float)) for v in values) else values
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
