"""A run directory: what was asked (``run.json``) and where each kind of output lives.

Layout::

    run.json             model, seed, settings and their hash, the model's fingerprint: what every
                         image here was made with; the execution the run chose (precision,
                         memory format, batch size)
    parts/*.jsonl        per-writer manifest parts (one per process / shard / rank)
    manifest.jsonl       the merged manifest, one record per unit
    images/<layer>/<unit>.png  full-size images;  thumbs/<layer>/<unit>.png  thumbnails of images
                         larger than a gallery cell (smaller ones are shown from images/)
    images/<layer>/<unit>~facet<f>.png  facet f > 0 of a unit rendered with facets (facet 0 is
                         <unit>.png); thumbs/ likewise
    images/<layer>/<unit>[~facet<f>]~rgba.png  with param='maco': the picture with the attribution
                         map as its alpha channel
    sheets/<layer>.png   contact sheet per layer;  index.html + gallery/  the gallery

<layer> and <unit> are ``names.stem`` forms: injective for any name, never '.' or '..'.
``run.json`` and the manifest are strict JSON: a non-finite number (``clip: inf``) is stored as
the string "inf", "-inf" or "nan" (``JSON.parse`` and jq read it unchanged); the settings hash
is computed as before, so older run directories still resume.

A directory holds one set of settings and one model, never a mix: reusing it with other settings
raises ``SettingsMismatchError``, and with a model whose fingerprint (a hash of its parameters and
buffers, ``pyviz_fast.model_fingerprint``) differs from the one recorded raises
``ModelMismatchError``, unless ``force=True``, which discards the old run's outputs. A run.json
without a fingerprint (an older run, or a caller that passes none) is not checked for it.
Nor does a run mix two ways of reading a layer: ``layer_reads`` records how (``LAYER_READS``),
and a run started before outputs rewritten in place were read as made cannot be resumed on
layers the model rewrites (``rewritten``), which its earlier records may have read after the
rewrite (``ReadsMismatchError``).
Processes run with ``--shard i/n`` split one work list among themselves: the first records the
list (its length and hash) and n in run.json (``shards``), and a shard of another list or n
raises ``ShardsMismatchError`` (a mix would leave units no shard renders). Unsharded runs render
their whole list and are not checked.
A run grounded in a dataset records it and its number of examples (``grounding``); another of
either raises ``GroundingMismatchError`` (it would replace every unit's grounding). These two
records are outside the settings hash: the first process that has one writes it, so a run made
before they existed resumes, and an atlas rendered without a dataset can be grounded later.

>>> run = RunDir("audit/run1")
>>> run.prepare(model="shapesnet", seed=0, settings={"steps": 64})
"""
import contextlib
import fcntl
import hashlib
import json
import re
import shutil
from pathlib import Path

from pyviz_fast.audit.files import remove_partials, strict_json, strict_json_dumps, write_text_atomic
from pyviz_fast.audit.names import stem, unit_file

RUN_FILE = "run.json"
FORMAT = 1
# How the engine reads a layer: 2 = an output rewritten in place later in the forward (VGG's
# ReLU(inplace=True) after a convolution) is read as the layer made it (commit f936183).
LAYER_READS = 2
_OUTPUTS = ("parts", "images", "thumbs", "sheets", "gallery", "dataset", "examples", "manifest.jsonl", "index.html")


class RunDirError(ValueError):
    """The run directory cannot be used for this run."""


class SettingsMismatchError(RunDirError):
    """The run directory already holds results made with different settings."""


class ReadsMismatchError(SettingsMismatchError):
    """The run directory was started by an engine that read some of this run's layers otherwise."""


class ModelMismatchError(SettingsMismatchError):
    """The run directory already holds results made with a model of other weights."""


class ShardsMismatchError(SettingsMismatchError):
    """The run directory's shards split another work list, or split it in another number of shards."""


class GroundingMismatchError(SettingsMismatchError):
    """The run directory's units were grounded in another dataset or with another number of examples."""


def shard_record(units, count: int) -> dict | None:
    """What every ``--shard i/count`` process of one run must agree on; None when unsharded."""
    if count == 1:
        return None
    names = hashlib.sha256("\n".join(map(str, units)).encode()).hexdigest()[:16]
    return {"count": count, "units": len(units), "units_hash": names}


def _shards_differ(root, theirs: dict, mine: dict) -> SettingsMismatchError:
    diffs = [f"{theirs[k]} -> {mine[k]} {what}" for k, what in (("count", "shards"), ("units", "units"))
             if theirs[k] != mine[k]] or ["another work list of as many units"]
    return ShardsMismatchError(
        f"{root} is split into {theirs['count']} shards of a list of {theirs['units']} units; this "
        f"--shard has {'; '.join(diffs)}: some units would be in no shard. Give every shard the same "
        "units and --shard count, or --force to discard the old results")


def _grounding_differs(root, theirs: dict, mine: dict) -> SettingsMismatchError:
    return GroundingMismatchError(
        f"{root} is grounded in dataset {theirs['dataset']!r} with {theirs['examples']} examples per unit; "
        f"this run asks for {mine['dataset']!r} with {mine['examples']}, which would replace every unit's "
        "grounding. Give the same --dataset and --examples, another output directory, or --force to "
        "discard the old results")


# run.json's records that every process of a run must agree on -> the error when one does not
_DISAGREEMENTS = {"shards": _shards_differ, "grounding": _grounding_differs}


def settings_hash(model: str, seed: int, settings: dict) -> str:
    """A short stable hash of everything that decides the images (model, seed, settings)."""
    text = json.dumps({"model": model, "seed": seed, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def safe_name(text: str) -> str:
    """A readable file-name-safe slug ('torchvision:resnet50' -> 'torchvision_resnet50') for
    default names chosen once; not injective, so a run directory's files use ``names.stem``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def _differences(old: dict, new: dict) -> list[str]:
    diffs = []
    for key in ("model", "seed"):
        if old.get(key) != new[key]:
            diffs.append(f"{key}: {old.get(key)!r} -> {new[key]!r}")
    old_settings, new_settings = old.get("settings", {}), new["settings"]
    for key in sorted(set(old_settings) | set(new_settings)):
        if old_settings.get(key) != new_settings.get(key):
            diffs.append(f"{key}: {old_settings.get(key)!r} -> {new_settings.get(key)!r}")
    return diffs


class RunDir:
    def __init__(self, root):
        self.root = Path(root)

    def image_path(self, layer: str, unit: str, *, facet: int = 0, variant: str = "") -> str:
        """Run-relative path of a unit's full-size PNG (posix separators, for the gallery), of its
        facet ``facet`` and its ``variant`` ('rgba'); injective for any names (``names.unit_file``)."""
        return f"images/{unit_file(layer, unit, facet=facet, variant=variant)}.png"

    def thumb_path(self, layer: str, unit: str, *, facet: int = 0) -> str:
        return f"thumbs/{unit_file(layer, unit, facet=facet)}.png"

    def sheet_path(self, layer: str) -> str:
        return f"sheets/{stem(layer)}.png"

    def part_path(self, shard_index: int, shard_count: int) -> Path:
        return self.root / "parts" / f"shard-{shard_index:03d}-of-{shard_count:03d}.jsonl"

    def read_run_info(self) -> dict | None:
        path = self.root / RUN_FILE
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise SettingsMismatchError(f"{path} is not a valid run file ({error}); "
                                        "use another output directory or --force") from None

    def check(self, model: str, seed: int, settings: dict, fingerprint: str | None = None,
              rewritten: tuple = (), agreed: dict | None = None) -> dict:
        """Validate that the directory holds this run (or none yet) without changing anything.
        rewritten: the run's layers whose output the model rewrites in place later in its forward.
        agreed: {"shards": this process's ``shard_record``, "grounding": its dataset and examples}
        (None values: nothing to agree on), checked against run.json's records of them."""
        settings = json.loads(json.dumps(settings, default=str))
        # the hash as before strict JSON (older run directories resume); the settings as run.json holds them
        info = {"format": FORMAT, "model": model, "seed": seed, "settings": strict_json(settings),
                "settings_hash": settings_hash(model, seed, settings), "layer_reads": LAYER_READS}
        if fingerprint is not None:
            info["model_fingerprint"] = fingerprint
        old = self.read_run_info()
        if old is not None and old.get("settings_hash") != info["settings_hash"]:
            diffs = "; ".join(_differences(old, info)) or "settings hash differs"
            raise SettingsMismatchError(
                f"{self.root} holds a run made with different settings ({diffs}); continue it with its own "
                f"settings (the CLI: --config {self.root / RUN_FILE}), use another output directory, or --force "
                "to discard the old results")
        if old is not None and rewritten and old.get("layer_reads", 1) < LAYER_READS:
            raise ReadsMismatchError(
                f"{self.root} was started by a pyviz_fast that read layer(s) {', '.join(map(repr, rewritten))} "
                "after the in-place operation that follows them (VGG's ReLU(inplace=True)) whenever a forward "
                "went past them: its records would mix two readings of these layers. Use another output "
                "directory, or --force to discard the old results")
        recorded = (old or {}).get("model_fingerprint")
        if recorded is not None and fingerprint is not None and recorded != fingerprint:
            raise ModelMismatchError(
                f"{self.root} holds a run made with model {model!r} of fingerprint {recorded}, but the model "
                f"loaded now has fingerprint {fingerprint}: its weights differ (other weights, or a random init "
                "from another seed or torch version); resuming would mix two models. Use the same model, "
                "another output directory, or --force to discard the old results")
        for key, mine in (agreed or {}).items():
            theirs = (old or {}).get(key)
            if theirs is not None and mine is not None and theirs != mine:
                raise _DISAGREEMENTS[key](self.root, theirs, mine)
        return info

    def prepare(self, model: str, seed: int, settings: dict, *, force: bool = False,
                fingerprint: str | None = None, rewritten: tuple = (), agreed: dict | None = None) -> dict:
        """Create or reopen the run directory for these settings; returns the run info.

        Raises SettingsMismatchError (or OSError when the directory is not writable)."""
        self.root.mkdir(parents=True, exist_ok=True)
        # --shard processes start together: the first to record the split is the one the others are checked by
        with self._locked():
            try:
                info = self.check(model, seed, settings, fingerprint, rewritten, agreed)
            except SettingsMismatchError:
                if not force:
                    raise
                self.discard_outputs()
                info = self.check(model, seed, settings, fingerprint, rewritten, agreed)
            remove_partials(self.root)
            old = self.read_run_info()
            new = {key: value for key, value in (agreed or {}).items() if value is not None and key not in (old or {})}
            if old is None or new:
                write_text_atomic(self.root / RUN_FILE, strict_json_dumps({**(old or info), **new}, indent=2))
        return info

    def execution_record(self) -> dict | None:
        """The execution recorded by the first process of this run (see audit/execution.py)."""
        return (self.read_run_info() or {}).get("execution")

    def record_execution(self, record: dict) -> None:
        """Add the execution record to run.json (outside the settings and their hash)."""
        with self._locked():
            info = self.read_run_info() or {}
            info["execution"] = record
            write_text_atomic(self.root / RUN_FILE, strict_json_dumps(info, indent=2))

    @contextlib.contextmanager
    def _locked(self):
        """Hold run.json's lock: every read-modify-write of run.json holds it, or one --shard process's
        write (its execution) could drop a record another wrote since it read (the shard split)."""
        with open(self.root / ".run.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def discard_outputs(self) -> None:
        """Delete what a previous run wrote here (only the names this package writes)."""
        for name in _OUTPUTS + (RUN_FILE,):
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
