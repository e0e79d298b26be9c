"""A render job's progress, as the render's ``callback`` reports it, for the page to stream.

The callback runs on the render's hot path, so it only keeps a reference to a copy of the
batch's images, at most every ``interval`` seconds (and after the last step); the event stream
turns the newest copy into images on its own time: JPEGs while the render runs (encoding PNGs a
few times a second cost as much CPU as a sixth of a small render), PNGs of the finished images.
A render thus pays one small copy a few times a second, whatever the step rate.

A job stops at its next step (state 'cancelled') when the page asks (``cancel``) or when no one
has watched it (``watch``: its event stream, or its status) for ``ABANDONED_S`` seconds: a closed
tab must not keep the model's queue busy for the tabs that wait behind it.

>>> job = board.add(Job("shapesnet", ["conv3:1", "conv3:2"], "render"))
>>> result = pvf.render(model, job.units, settings, callback=job.callback)
"""
import base64
import io
import itertools
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from pyviz_fast.audit.files import png_bytes, to_pil
from pyviz_fast.engine.result import images_to_uint8

KEEP_JOBS = 64  # finished jobs kept for their results; older ones are dropped
FINISHED = ("done", "failed", "cancelled")
ABANDONED_S = 5.0  # a job no one watched this long is cancelled (a page polls its stream every 50 ms)
_ids = itertools.count(1)


@dataclass
class Snapshot:
    """What the page is told: state ('queued', 'running', 'done', 'failed', 'cancelled'), progress, images."""
    version: int
    state: str
    step: int
    steps: int
    images: object  # float [B, C, h, w] on the CPU, or None before the first step
    error: str
    objective: list


def data_urls(images, final=True) -> list[str]:
    """Data URLs of float images [B, C, H, W] in [0, 1]: lossless PNGs (fast compression) of
    ``final`` images, JPEGs (quality 90, about 20x cheaper to encode) of live previews, which the
    page replaces a few times a second."""
    if final:
        return ["data:image/png;base64," + base64.b64encode(png_bytes(to_pil(array), 1)).decode("ascii")
                for array in images_to_uint8(images)]
    urls = []
    for array in images_to_uint8(images):
        image, buffer = to_pil(array), io.BytesIO()
        (image.convert("RGB") if image.mode == "RGBA" else image).save(buffer, format="JPEG", quality=90)
        urls.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
    return urls


class Cancelled(Exception):
    """Raised by a job's callback to stop its render (the engine passes a callback's exception on)."""


class Job:
    def __init__(self, model, units, kind, interval=0.25):
        self.id = str(next(_ids))
        self.model, self.units, self.kind, self.interval = model, list(units), kind, interval
        self._lock = threading.Lock()
        self._state, self._step, self._steps, self._images = "queued", 0, 0, None
        self._error, self._objective, self._version = "", [], 0
        self._last = 0.0
        self._cancel = ""  # why the job was cancelled, once it was
        self._watched = time.monotonic()  # the page has ABANDONED_S to open the stream
        self.seconds = None  # wall time of the render itself, once done

    def _set(self, **changes):
        with self._lock:
            for key, value in changes.items():
                setattr(self, "_" + key, value)
            self._version += 1

    def watch(self) -> None:
        """Someone follows this job (its event stream polls, or its status is asked)."""
        self._watched = time.monotonic()

    def cancel(self, reason="stopped") -> None:
        """Stop the job at its next step; one waiting in the queue is cancelled now (the model's
        worker skips it when it comes to it)."""
        with self._lock:
            self._cancel = self._cancel or reason
            if self._state == "queued":
                self._state, self._error = "cancelled", self._cancel
                self._version += 1

    @property
    def cancelled(self) -> bool:
        return bool(self._cancel)

    def _check_cancelled(self) -> None:
        if not self._cancel and time.monotonic() - self._watched > ABANDONED_S:
            self.cancel(f"no one watched it for {ABANDONED_S:g} s")
        if self._cancel:
            raise Cancelled(self._cancel)

    def callback(self, info) -> None:
        """The render's ``callback``: stop if cancelled; keep a copy of the images every ``interval`` s
        and at the end."""
        self._check_cancelled()
        now = time.monotonic()
        if info.step + 1 < info.steps and now - self._last < self.interval:
            return
        self._last = now
        self._set(step=info.step + 1, steps=info.steps, images=info.images.cpu().clone())

    def run(self, render):
        """Run ``render(callback) -> RenderResult`` as this job (on the model's queue)."""
        start = time.perf_counter()
        try:
            self._check_cancelled()
            self._set(state="running")
            result = render(self.callback)
        except Cancelled as error:
            self._set(state="cancelled", error=str(error))
            return None
        except Exception as error:  # the page shows it; the server goes on
            self._set(state="failed", error=(str(error).strip().splitlines() or [type(error).__name__])[0][:500])
            return None
        self.seconds = time.perf_counter() - start
        reasons = [r for r in result.reasons if r]
        self._set(state="done", images=result.images, objective=[round(float(v), 6) for v in result.objective],
                  step=result.settings.steps, steps=result.settings.steps, error="; ".join(reasons)[:500])
        return result

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self._version, self._state, self._step, self._steps, self._images, self._error,
                            list(self._objective))


class JobBoard:
    """The server's jobs by id, the newest ``KEEP_JOBS`` only."""

    def __init__(self):
        self._jobs = OrderedDict()
        self._lock = threading.Lock()

    def add(self, job: Job) -> Job:
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_JOBS:
                self._jobs.popitem(last=False)
        return job

    def get(self, job_id):
        with self._lock:
            return self._jobs.get(job_id)

    def ahead_of(self, job) -> int:
        """How many jobs of the same model wait before ``job`` (0 when it runs)."""
        with self._lock:
            jobs = list(self._jobs.values())
        # a cancelled job leaves the queue at once (queued) or at its next step (running)
        waiting = [j for j in jobs if j.model == job.model and not j.cancelled and
                   j.snapshot().state in ("queued", "running")]
        return waiting.index(job) if job in waiting else 0
