"""Make the README's picture of an atlas with facets and MaCo alpha maps (docs/atlas-facets.png):
a grounded ShapesNet atlas rendered by the real command, its gallery opened in headless Chromium,
a class logit's detail view with the attribution maps shown over the checkerboard.

    python docs/make_atlas_facets_picture.py      # a few minutes on a 2-core CPU; needs /usr/bin/chromium
"""
import pathlib
import subprocess
import sys
import tempfile

from playwright.sync_api import sync_playwright

DOCS = pathlib.Path(__file__).parent
sys.path.insert(0, str(DOCS.parent / "tests"))
from browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (the tests' Chromium, never a download)

ATLAS = ["conv3:0-3", "fc:0-3", "--param", "maco", "--maco-magnitude", "shapes", "--facets", "3", "--size", "64",
         "--steps", "48", "--dataset", "shapes:500", "--examples", "4", "--workers", "0", "-q"]


def screenshot_panel_top(page, path):
    """The detail panel's top: navigation, the facets with their alpha maps and the top dataset examples."""
    box = page.locator(".panel").bounding_box()
    pictures = page.locator(".pictures").bounding_box()
    page.screenshot(path=str(path),
                    clip={"x": box["x"], "y": box["y"], "width": box["width"],
                          "height": pictures["y"] + pictures["height"] - box["y"] + 8})


def main():
    with tempfile.TemporaryDirectory() as tmp:
        run = pathlib.Path(tmp, "atlas")
        subprocess.run([sys.executable, "-m", "pyviz_fast", "atlas", *ATLAS, "--out", str(run)], check=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 760})
            page.goto((run / "index.html").as_uri() + "#unit=fc%3A1")
            page.wait_for_selector(".pictures.facets .beside img")
            page.click("#alpha")
            page.wait_for_function("[...document.querySelectorAll('#detail img')].every(i => i.complete)")
            screenshot_panel_top(page, DOCS / "atlas-facets.png")
            browser.close()


if __name__ == "__main__":
    main()
