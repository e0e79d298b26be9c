"""The Starlette app: the page, a small JSON API and server-sent events of a render's progress.

    GET  /                       the page (static/index.html, app.js, style.css)
    GET  /api/models             the model specs this server was started with
    GET  /api/layers?model=SPEC  layers with channel counts and the unit kinds each offers
    POST /api/render             {model, units: [{layer, kind, index}], settings: {...}, seed} -> {job}
    POST /api/dream              multipart: photo (file), model, layer, kind, index, steps, lr -> {job}
    GET  /api/jobs/ID            the job's state, step, objective values, error, place in the queue
    GET  /api/jobs/ID/events     text/event-stream: one JSON message per change, images as PNG data URLs
    POST /api/jobs/ID/cancel     stop the job (running: at its next step; queued: before it starts)
    GET  /api/atlas              the atlas run directories given with --runs
    GET  /atlas/N/PATH           a file of run N (its index.html by default), served as on disk

A refused request is answered 400 (413: an upload too large, 404: no such job) with {error,
field}: the message, naming the bad value and what would be valid, and the request's field that
holds it when one does (the page marks that input).

Every route is thin: checking is ``inputs.py``, the work is ``pyviz_fast.render`` / ``dream``
on the model's queue (``models.py``), progress is ``jobs.py``.
"""
import asyncio
import contextlib
import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pyviz_fast.engine.dream import dream, dream_unit
from pyviz_fast.engine.render import render
from pyviz_fast.engine.units import parse_units
from pyviz_fast.serve import inputs
from pyviz_fast.serve.inputs import InputError
from pyviz_fast.serve.jobs import FINISHED, Job, JobBoard, data_urls
from pyviz_fast.serve.models import ModelRegistry, UnknownModel
from pyviz_fast.serve.runs import AtlasRuns

STATIC = Path(__file__).parent / "static"
POLL_S = 0.05  # how often an event stream looks for news


def _error(message, status=400, field=None):
    """The JSON answer to a bad request: its message, and the request's field at fault if one is."""
    return JSONResponse({"error": message, **({"field": field} if field else {})}, status_code=status)


def _checked_units(models, spec, specs):
    """Parse ``specs`` against the model and check channel indices against its layer listing."""
    model = models.model(spec)
    try:
        units = parse_units(specs, model=model)
    except (ValueError, TypeError) as error:
        raise InputError(str(error)) from None
    channels = {layer["name"]: layer["channels"] for layer in models.layers(spec)}
    for unit in units:
        for term in unit.terms:
            count = channels.get(term.layer)
            if term.index is not None and count is not None and not term.index < count:
                raise InputError(f"unit {str(unit)!r}: layer {term.layer!r} has {count} channels "
                                 f"(0-{count - 1}); got {term.index}", field="index")
    return model, units


def create_app(model_specs, runs=(), device="cpu", interval=0.25):
    """The ASGI app serving ``model_specs`` (only these can be loaded) and the atlas ``runs``.
    interval: seconds between the images a render's callback keeps for the page."""
    models, board, atlas = ModelRegistry(model_specs, device), JobBoard(), AtlasRuns(runs)

    async def guarded(handler, request):
        try:
            return await handler(request)
        except InputError as error:
            return _error(str(error), error.status, error.field)
        except UnknownModel as error:
            return _error(str(error))

    def route(path, handler, methods=("GET",)):
        async def endpoint(request):
            return await guarded(handler, request)
        return Route(path, endpoint, methods=list(methods))

    async def page(request):
        return FileResponse(STATIC / "index.html")

    async def list_models(request):
        return JSONResponse({"models": models.specs})

    async def list_layers(request):
        spec = models.check(request.query_params.get("model", models.specs[0]))
        return JSONResponse({"model": spec, "layers": await run_in_threadpool(models.layers, spec)})

    def queue(spec, units, kind, work):
        job = board.add(Job(spec, [str(u) for u in units], kind, interval))
        models.submit(spec, lambda: job.run(work))
        return JSONResponse({"job": job.id, "kind": kind, "units": job.units}, status_code=202)

    async def start_render(request):
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError("the body must be JSON: {model, units, settings, seed}") from None
        if not isinstance(body, dict):
            raise InputError("the body must be a JSON object: {model, units, settings, seed}")
        spec = models.check(body.get("model", models.specs[0]))
        specs, settings = inputs.unit_specs(body.get("units")), inputs.settings_from(body.get("settings"))
        seed = inputs.seed_from(body.get("seed"))
        model, units = await run_in_threadpool(_checked_units, models, spec, specs)
        return queue(spec, units, "render", lambda callback: render(
            model, units, settings, device=device, seed=seed, batch_size=len(units), callback=callback))

    async def start_dream(request):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > inputs.MAX_UPLOAD_BYTES + 64 * 1024:
            raise InputError(f"the upload is {declared} bytes; the limit is {inputs.MAX_UPLOAD_BYTES} bytes", 413,
                             field="photo")
        try:
            form = await request.form(max_files=1, max_fields=16)
        except Exception as error:  # malformed multipart: the parser's own message
            raise InputError(f"expected a multipart form with a photo: {error}") from None
        upload = form.get("photo")
        if not isinstance(upload, UploadFile):
            raise InputError("choose a photo to dream (form field 'photo' must be a file)", field="photo")
        photo = inputs.read_upload(await upload.read(inputs.MAX_UPLOAD_BYTES + 1))
        spec = models.check(form.get("model") or models.specs[0])
        pick = {"layer": form.get("layer"), "kind": form.get("kind") or "layer",
                "index": inputs.form_number(form, "index")}
        fields = {name: inputs.form_number(form, name) for name in ("steps", "lr")}
        settings = inputs.dream_settings({name: value for name, value in fields.items() if value is not None}, photo)
        model, units = await run_in_threadpool(_checked_units, models, spec, [inputs.unit_spec(pick)])
        try:
            dream_unit(model, units[0])
        except ValueError as error:
            raise InputError(str(error)) from None
        return queue(spec, units, "dream", lambda callback: dream(
            model, photo, units[0], settings, device=device, callback=callback))

    def job_state(job, snapshot):
        return {"job": job.id, "kind": job.kind, "units": job.units, "state": snapshot.state, "step": snapshot.step,
                "steps": snapshot.steps, "objective": snapshot.objective, "error": snapshot.error,
                "ahead": board.ahead_of(job), "seconds": job.seconds}

    def find_job(request):
        job = board.get(request.path_params["job"])
        if job is None:
            raise InputError(f"no job {request.path_params['job']!r} (finished jobs are kept for a while)", 404)
        return job

    async def job_status(request):
        job = find_job(request)
        job.watch()
        return JSONResponse(job_state(job, job.snapshot()))

    async def job_events(request):
        job = find_job(request)

        async def stream():
            told, images_sent = None, None
            while True:  # ends when the job does, or when the client goes (the job then times out)
                job.watch()
                snapshot = job.snapshot()
                message = job_state(job, snapshot)
                if (snapshot.version, message["ahead"]) != told:
                    told = (snapshot.version, message["ahead"])
                    if snapshot.images is not None and snapshot.images is not images_sent:
                        images_sent = snapshot.images
                        message["images"] = await run_in_threadpool(data_urls, snapshot.images,
                                                                    snapshot.state == "done")
                    yield f"data: {json.dumps(message)}\n\n"
                if snapshot.state in FINISHED:
                    return
                await asyncio.sleep(POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def cancel_job(request):
        job = find_job(request)
        job.cancel()
        return JSONResponse(job_state(job, job.snapshot()))

    async def list_runs(request):
        return JSONResponse({"runs": await run_in_threadpool(atlas.listing)})

    async def run_file(request):
        path = await run_in_threadpool(atlas.file, request.path_params["run"], request.path_params.get("path", ""))
        return FileResponse(path) if path is not None else Response("not found", status_code=404)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        models.close()

    routes = [
        Route("/", page), Mount("/static", StaticFiles(directory=STATIC), name="static"),
        route("/api/models", list_models), route("/api/layers", list_layers),
        route("/api/render", start_render, ("POST",)), route("/api/dream", start_dream, ("POST",)),
        route("/api/jobs/{job}", job_status), route("/api/jobs/{job}/events", job_events),
        route("/api/jobs/{job}/cancel", cancel_job, ("POST",)),
        route("/api/atlas", list_runs),
        Route("/atlas/{run:int}/", run_file), Route("/atlas/{run:int}/{path:path}", run_file),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.models, app.state.board = models, board
    return app

