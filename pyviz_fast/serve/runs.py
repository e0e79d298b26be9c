"""Atlas run directories the server was started with, served as they are on disk: the page
opens a run's own ``index.html`` (the atlas gallery and its detail view), so the app adds no
second gallery. Only files inside a listed run directory are ever served.

>>> runs = AtlasRuns(["audit"])        # a run directory, or a folder of them
>>> [run["name"] for run in runs.listing()]
['shapesnet', 'googlenet']
>>> runs.file(0, "index.html")
PosixPath('/home/me/audit/shapesnet/index.html')
"""
from pathlib import Path

from pyviz_fast.audit.manifest import read_records
from pyviz_fast.audit.run_dir import RUN_FILE


def _run_dirs(root: Path) -> list[Path]:
    if (root / RUN_FILE).is_file():
        return [root]
    return sorted(child for child in root.iterdir() if (child / RUN_FILE).is_file()) if root.is_dir() else []


class AtlasRuns:
    def __init__(self, roots=()):
        self.roots = [Path(root).resolve() for root in roots]

    def dirs(self) -> list[Path]:
        """The run directories now under the roots (a run finished since start-up shows too)."""
        return [run for root in self.roots for run in _run_dirs(root)]

    def listing(self) -> list[dict]:
        return [{"id": k, "name": run.name, "path": str(run), "units": len(read_records(run / "manifest.jsonl")),
                 "gallery": (run / "index.html").is_file()} for k, run in enumerate(self.dirs())]

    def file(self, run_id: int, relative: str):
        """The file ``relative`` inside run ``run_id``, or None (absent, or outside the run)."""
        runs = self.dirs()
        if not 0 <= run_id < len(runs):
            return None
        root = runs[run_id]
        target = (root / (relative or "index.html")).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return None
        return target
