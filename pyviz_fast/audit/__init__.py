"""Large-scale audits: run directories, crash-safe manifests, resume, shards, torchrun, dataset
grounding, gallery.

>>> from pyviz_fast.audit import AtlasJob, run_atlas
>>> outcome = run_atlas(units, render_batch, AtlasJob(root="runs/a", model="shapesnet", seed=0, settings={}))
>>> job = AtlasJob(..., grounder=DatasetGrounder(model, settings, "shapes:2000"))  # with dataset examples
"""
from pyviz_fast.audit.atlas import AtlasJob, AtlasOutcome, run_atlas, trajectory_stats
from pyviz_fast.audit.distributed import Distributed
from pyviz_fast.audit.grounding import ground_run
from pyviz_fast.audit.manifest import read_records
from pyviz_fast.audit.run_dir import (ModelMismatchError, ReadsMismatchError, RunDir, RunDirError,
                                      SettingsMismatchError, settings_hash)
from pyviz_fast.audit.shards import Shard
from pyviz_fast.audit.writer import WriterError

__all__ = ["AtlasJob", "AtlasOutcome", "run_atlas", "trajectory_stats", "Distributed", "ground_run", "read_records",
           "ModelMismatchError", "ReadsMismatchError", "RunDir", "RunDirError", "SettingsMismatchError", "settings_hash",
           "Shard", "WriterError"]
