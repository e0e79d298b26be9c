"""The example notebook (docs/example.ipynb) runs top to bottom and shows image grids."""
import os
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient", reason="pip install nbclient ipykernel (the notebook extra)")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "example.ipynb"


@pytest.mark.slow
def test_example_notebook_runs_and_shows_image_grids(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel (this Python, via ipykernel) imports the pyviz_fast the tests import.
    import pyviz_fast
    package_root = str(Path(pyviz_fast.__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    html = [output["data"]["text/html"] for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if "text/html" in output.get("data", {})]
    assert len(html) == 3  # res, res.show(...), pvf.show(classes)
    assert [markup.count("<img") for markup in html] == [8, 4, 10]
    assert "conv2:7" in html[0] and "4 more not shown" in html[1] and "fc:9@class" in html[2]
