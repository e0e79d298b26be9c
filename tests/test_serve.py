"""The web app (``pyviz-fast serve``): its routes and errors through Starlette's TestClient, and
the page as a user sees it: the real server in a subprocess, driven in headless Chromium."""
import io
import json
import socket
import subprocess
import sys
import threading
import time
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="pip install 'pyviz_fast[gui]'")
from starlette.testclient import TestClient  # noqa: E402

from browser import collect_page_errors  # noqa: E402
from pyviz_fast.serve import create_app  # noqa: E402
from pyviz_fast.serve.inputs import MAX_UNITS, MAX_UPLOAD_BYTES  # noqa: E402
from pyviz_fast.serve.models import ModelRegistry  # noqa: E402
from pyviz_fast.serve.server import CannotListen, PortInUse, bind, url  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
FAST = {"steps": 6, "size": 48}


@pytest.fixture(scope="module")
def atlas_runs(tmp_path_factory):
    """A folder holding one (tiny, hand-made) atlas run directory."""
    root = tmp_path_factory.mktemp("runs")
    run = root / "run1"
    (run / "images").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"model": "shapesnet"}))
    (run / "manifest.jsonl").write_text('{"unit": "conv1:0", "status": "ok"}\n{"unit": "conv1:1", "status": "ok"}\n')
    (run / "index.html").write_text("<!doctype html><title>gallery</title><h1 id='gallery'>run1 gallery</h1>")
    (root / "secret.txt").write_text("outside every run")
    return root


@pytest.fixture(scope="module")
def client(atlas_runs):
    with TestClient(create_app(["shapesnet"], runs=[atlas_runs], interval=0.0)) as client:
        yield client


def png(size=(40, 36), color=(200, 60, 30)) -> bytes:
    buffer = io.BytesIO()
    array = np.zeros((size[1], size[0], 3), np.uint8)
    array[:] = color
    array[::4] = 255
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def events(client, job):
    """Every message of a job's event stream, until it ends."""
    with client.stream("GET", f"/api/jobs/{job}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line[len("data: "):]) for line in response.iter_lines() if line.startswith("data: ")]


def decoded(url, kind="png"):
    assert url.startswith(f"data:image/{kind};base64,"), url[:30]
    import base64
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        return np.asarray(image.convert("RGB"))


def test_page_and_lists(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="render"' in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/api/models").json() == {"models": ["shapesnet"]}
    layers = {layer["name"]: layer for layer in client.get("/api/layers?model=shapesnet").json()["layers"]}
    assert layers["conv3"]["channels"] == 64 and layers["conv3"]["kinds"] == ["channel", "neuron", "layer"]
    assert layers["fc"]["kinds"][0] == "class" and layers["fc"]["channels"] == 10


@pytest.fixture
def paced_steps(monkeypatch):
    """Each step's callback waits a few of the stream's polls: a render of 6 tiny steps can
    otherwise finish between two polls on a fast machine, and the stream rightly shows only
    the newest state."""
    from pyviz_fast.serve.app import POLL_S
    from pyviz_fast.serve.jobs import Job
    report = Job.callback

    def paced(self, info):
        time.sleep(4 * POLL_S)
        report(self, info)
    monkeypatch.setattr(Job, "callback", paced)


def test_render_streams_every_step_then_the_result(client, paced_steps):
    picks = [{"layer": "conv3", "kind": "channel", "index": 3}, {"layer": "conv2", "kind": "layer"},
             {"layer": "fc", "kind": "class", "index": 1}]
    answer = client.post("/api/render", json={"model": "shapesnet", "units": picks, "settings": FAST, "seed": 2})
    assert answer.status_code == 202, answer.text
    assert answer.json()["units"] == ["conv3:3", "conv2@deepdream", "fc:1@class"]
    messages = events(client, answer.json()["job"])
    steps = [m["step"] for m in messages if m["state"] == "running"]
    assert steps == sorted(steps) and len(set(steps)) >= 2, steps  # watched as it went
    last = messages[-1]
    assert last["state"] == "done" and len(last["objective"]) == 3 and last["error"] == ""
    shown = [m["images"] for m in messages if "images" in m]
    assert len(shown) >= 2 and all(len(images) == 3 for images in shown)
    first, final = decoded(shown[0][0], "jpeg"), decoded(last["images"][0])  # live previews JPEG, the result PNG
    assert final.shape == (48, 48, 3) and np.abs(final.astype(float) - first.astype(float)).mean() > 1
    status = client.get(f"/api/jobs/{answer.json()['job']}").json()
    assert status["state"] == "done" and status["objective"] == last["objective"]


LONG = {"units": [{"layer": "conv3", "index": 0}], "settings": {"steps": 4096, "size": 48}}


def wait_for_state(board, job, states, timeout=60):
    deadline = time.monotonic() + timeout
    while board.get(job).snapshot().state not in states:
        assert time.monotonic() < deadline, board.get(job).snapshot()
        time.sleep(0.02)
    return board.get(job).snapshot()


def test_stop_cancels_a_running_and_a_queued_job(client):
    board = client.app.state.board
    running, queued = (client.post("/api/render", json=LONG).json()["job"] for _ in range(2))
    wait_for_state(board, running, ("running",))
    assert client.get(f"/api/jobs/{queued}").json()["ahead"] == 1
    assert client.post(f"/api/jobs/{queued}/cancel").json()["state"] == "cancelled"  # not when its turn comes
    assert events(client, queued)[-1]["state"] == "cancelled"
    assert client.get(f"/api/jobs/{running}").json()["state"] == "running"
    assert client.post(f"/api/jobs/{running}/cancel").status_code == 200
    last = events(client, running)[-1]
    assert last["state"] == "cancelled" and last["step"] < 4096 and last["error"] == "stopped", last
    assert client.post("/api/jobs/999999/cancel").status_code == 404


def test_a_job_no_one_watches_is_cancelled_and_the_queue_moves_on(client, monkeypatch):
    import pyviz_fast.serve.jobs as jobs
    monkeypatch.setattr(jobs, "ABANDONED_S", 0.5)
    board = client.app.state.board
    abandoned = client.post("/api/render", json=LONG).json()["job"]  # its page was closed: no stream
    waiting = client.post("/api/render", json={"units": [{"layer": "conv3", "index": 1}], "settings": FAST})
    last = events(client, waiting.json()["job"])[-1]
    assert last["state"] == "done", last
    gone = wait_for_state(board, abandoned, ("cancelled",), timeout=5)
    assert "no one watched it for 0.5 s" in gone.error and gone.step < 4096


@pytest.mark.parametrize("body, status, message", [
    ({"model": "torchvision:resnet18", "units": [{"layer": "conv1", "index": 0}]}, 400, "not served"),
    ({"units": [{"layer": "conv3", "kind": "channel", "index": 64}]}, 400, "has 64 channels (0-63)"),
    ({"units": [{"layer": "conv9", "kind": "channel", "index": 0}]}, 400, "conv9"),
    ({"units": [{"layer": "conv3", "kind": "pixel", "index": 0}]}, 400, "kind must be one of"),
    ({"units": [{"layer": "conv3", "kind": "channel"}]}, 400, "index must be an integer"),
    ({"units": []}, 400, "list of 1 to 16"),
    ({"units": [{"layer": "conv3", "index": k} for k in range(20)]}, 400, "at most 16 units, you have 20"),
    ({"units": [{"layer": "conv3", "index": 0}], "settings": {"steps": 0}}, 400, "steps must be an integer >= 1"),
    ({"units": [{"layer": "conv3", "index": 0}], "settings": {"size": 4096}}, 400, "size must be <= 512, got 4096"),
    ({"units": [{"layer": "conv3", "index": 0}], "settings": {"init_image": "/etc/passwd"}}, 400, "unknown setting"),
    ({"units": [{"layer": "conv3", "index": 0}], "seed": -1}, 400, "seed must be an integer"),
    ({"units": [{"layer": "conv3", "index": 0}], "settings": {"steps": 2.5}}, 400, "steps must be an integer, got 2.5"),
    ({"units": [{"layer": "conv3", "index": 0}], "settings": {"lr": -1}}, 400, "lr must be a finite number > 0, got -1"),
])
def test_bad_render_requests(client, body, status, message):
    answer = client.post("/api/render", json=body)
    assert answer.status_code == status and message in answer.json()["error"], answer.text


@pytest.mark.parametrize("body, field, message", [
    ({"settings": {"jitter": 65}}, "jitter", "setting jitter must be <= 64, got 65"),
    ({"settings": {"octaves": 9, "steps": 8}}, "octaves", "setting octaves must be <= 8, got 9"),
    ({"settings": {"steps": 8, "lr": -1}}, "lr", "lr must be a finite number > 0, got -1"),
    ({"settings": {"size": 2.5}}, "size", "setting size must be an integer, got 2.5"),
    ({"units": [{"layer": "conv3", "index": 64}]}, "index", "layer 'conv3' has 64 channels (0-63); got 64"),
    ({"units": [{"layer": "conv3", "index": -1}]}, "index", "unit index must be an integer >= 0"),
    ({"seed": -1}, "seed", "seed must be an integer >= 0, got -1"),
    ({"units": []}, None, "list of 1 to 16"),
])
def test_a_bad_value_names_its_one_field(client, body, field, message):
    """The answer names the one request field at fault (the page marks it) and only that field's limit."""
    answer = client.post("/api/render", json={"units": [{"layer": "conv3", "index": 0}], **body})
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text
    assert answer.json().get("field") == field
    assert all(other not in answer.json()["error"] for other in {"size", "steps", "jitter", "octaves"} - {field})


def test_not_json_and_unknown_job(client):
    answer = client.post("/api/render", content=b"units=conv3", headers={"content-type": "text/plain"})
    assert answer.status_code == 400 and "must be JSON" in answer.json()["error"]
    assert client.get("/api/jobs/999999").status_code == 404


def test_a_render_that_fails_reports_why(client):
    answer = client.post("/api/render", json={"units": [{"layer": "conv3", "index": 0}], "settings": {"size": 16}})
    last = events(client, answer.json()["job"])[-1]
    assert last["state"] == "failed" and "H, W >= 32" in last["error"]


def test_dream_of_an_upload(client):
    form = {"model": "shapesnet", "layer": "conv2", "kind": "layer", "steps": "4", "lr": "0.05"}
    answer = client.post("/api/dream", data=form, files={"photo": ("../../etc/evil.png", png(), "image/png")})
    assert answer.status_code == 202, answer.text
    assert answer.json()["units"] == ["conv2@deepdream"] and answer.json()["kind"] == "dream"
    last = events(client, answer.json()["job"])[-1]
    assert last["state"] == "done", last
    dreamed = decoded(last["images"][0])
    assert dreamed.shape == (36, 40, 3)  # the photo's own size
    assert not Path("/etc/evil.png").exists()  # the client's name is never a path


@pytest.mark.parametrize("photo, status, message", [
    (b"this is not an image", 400, "not an image Pillow can read"),
    (b"", 400, "empty"),
    (b"\0" * (MAX_UPLOAD_BYTES + 1), 413, "limit is"),
    (None, 400, "choose a photo"),
])
def test_bad_uploads(client, photo, status, message):
    files = {"photo": ("x.png", photo, "image/png")} if photo is not None else {"other": ("x.txt", b"1", "text/plain")}
    answer = client.post("/api/dream", data={"layer": "conv2"}, files=files)
    assert answer.status_code == status and message in answer.json()["error"], answer.text
    assert answer.json()["field"] == "photo"


@pytest.mark.parametrize("fields, message", [
    ({"steps": "inf"}, "steps must be a finite number, got 'inf'"),
    ({"steps": "nan"}, "steps must be a finite number, got 'nan'"),
    ({"steps": "1e400"}, "steps must be a finite number, got '1e400'"),
    ({"steps": "many"}, "steps must be a finite number, got 'many'"),
    ({"steps": "2.5"}, "steps must be an integer, got 2.5"),
    ({"lr": "1e400"}, "lr must be a finite number, got '1e400'"),
    ({"kind": "channel", "index": "-1"}, "unit index must be an integer >= 0 for kind 'channel', got -1"),
    ({"kind": "channel", "index": "inf"}, "index must be a finite number, got 'inf'"),
])
def test_bad_dream_numbers(client, fields, message):
    answer = client.post("/api/dream", data={"layer": "conv2", **fields}, files={"photo": ("p.png", png())})
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text


@pytest.mark.parametrize("settings, message", [
    # JSON ints are unbounded: float() of it overflowed
    ('{"steps": 1%s}' % ("0" * 400), "steps must be <= 4096, got 1000"),
    ('{"steps": Infinity}', "steps must be an integer, got inf"),  # Python's JSON reads Infinity, NaN, 1e400
    ('{"lr": 1e400}', "lr must be a finite number > 0, got inf"),
    ('{"blur_end": NaN}', "blur_end must be a finite number >= 0, got nan"),
])
def test_render_settings_beyond_floats(client, settings, message):
    body = '{"units": [{"layer": "conv3", "index": 0}], "settings": %s}' % settings
    answer = client.post("/api/render", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text


def test_dream_needs_one_unit_not_a_whole_layer_kind(client):
    answer = client.post("/api/dream", data={"layer": "conv2", "kind": "channel"}, files={"photo": ("p.png", png())})
    assert answer.status_code == 400 and "index must be an integer" in answer.json()["error"]


def test_one_render_at_a_time_per_model():
    models = ModelRegistry(["shapesnet"])
    running, most = [0], [0]
    lock = threading.Lock()

    def work():
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
    futures = [models.submit("shapesnet", work) for _ in range(4)]
    for future in futures:
        future.result(timeout=30)
    models.close()
    assert most[0] == 1


def test_atlas_runs_are_browsed_inside_their_directory(client):
    runs = client.get("/api/atlas").json()["runs"]
    assert [(run["name"], run["units"], run["gallery"]) for run in runs] == [("run1", 2, True)]
    assert "run1 gallery" in client.get("/atlas/0/").text
    assert client.get("/atlas/0/index.html").status_code == 200
    for path in ("/atlas/0/../secret.txt", "/atlas/0/%2e%2e/secret.txt", "/atlas/1/", "/atlas/0/nothing.png"):
        answer = client.get(path)
        assert answer.status_code == 404 and "outside every run" not in answer.text, path


def test_port_in_use_is_one_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is in use"):
            bind("127.0.0.1", port)
        done = subprocess.run([sys.executable, "-m", "pyviz_fast", "serve", "--port", str(port)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""  # no start-up line before the error
    assert done.stderr.strip() == f"pyviz-fast: error: port {port} on 127.0.0.1 is in use; choose another with --port"


@pytest.mark.parametrize("host, message", [
    ("no.such.host.invalid", "host 'no.such.host.invalid' cannot be resolved ("),
    ("10.9.9.9", "host 10.9.9.9 is not an address of this machine ("),
])
def test_a_host_that_cannot_be_bound_blames_the_host(host, message):
    with pytest.raises(CannotListen, match="choose another with --host") as caught:
        bind(host, free_port())
    assert str(caught.value).startswith(message) and not isinstance(caught.value, PortInUse), caught.value


def test_an_ipv6_address_is_bracketed_in_the_url():
    assert url("::1", 8773) == "http://[::1]:8773/" and url("127.0.0.1", 80) == "http://127.0.0.1:80/"


@pytest.mark.parametrize("runs, what", [("nonexistent", "does not exist"), ("file.txt", "is not a directory")])
def test_runs_that_are_no_directory_are_an_error(tmp_path, capsys, monkeypatch, runs, what):
    import pyviz_fast.serve
    from pyviz_fast.cli import main
    monkeypatch.setattr(pyviz_fast.serve, "serve", lambda *args, **kwargs: pytest.fail("it served"))
    (tmp_path / "file.txt").write_text("not a run")
    assert main(["serve", "--runs", str(tmp_path / runs), "--port", str(free_port())]) == 2
    assert f"--runs {tmp_path / runs} {what}; give an atlas run directory" in capsys.readouterr().err


# --- the page in a browser, against the real server -----------------------------------------

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(*args):
    """``pyviz-fast serve ARGS`` in a subprocess on a free localhost port, once it answers: (process, URL)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "pyviz_fast", "serve", "--port", str(port), *args], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    import urllib.request
    while True:
        try:
            urllib.request.urlopen(url + "/api/models", timeout=2).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the server did not start: {process.stdout.read()}")
            time.sleep(0.2)
    return process, url


@pytest.fixture(scope="module")
def server(atlas_runs):
    """``pyviz-fast serve`` with the atlas runs; its base URL."""
    process, url = start_server("--runs", str(atlas_runs), "--interval", "0")
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_page_renders_live_and_shows_a_bad_upload(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = collect_page_errors(page)
    page.goto(server)
    page.wait_for_function("document.querySelectorAll('#layer option').length > 0")
    page.select_option("#layer", "conv3")
    page.select_option("#kind", "channel")
    page.fill("#index", "5")
    page.fill("#steps", "300")  # about a second on a fast machine: long enough to see several updates
    page.fill("#size", "64")
    sources = []
    page.expose_function("recordSource", lambda src: sources.append(src))
    page.click("#render")
    page.wait_for_selector("#results img")
    page.evaluate("""() => new MutationObserver((changes) => changes.forEach((c) => recordSource(c.target.src)))
                       .observe(document.querySelector('#results img'), {attributes: true, attributeFilter: ['src']})""")
    page.wait_for_function("document.querySelector('#status').textContent.includes('done')", timeout=120_000)
    assert int(page.get_attribute("#results img", "data-updates")) >= 3  # it evolved on screen
    assert len(set(sources)) >= 2, len(sources)
    assert "conv3:5" in page.text_content("#results figcaption")
    assert page.evaluate("document.querySelector('#results img').naturalWidth") == 64

    page.click("#add")  # compare two units side by side
    page.fill("#index", "6")
    page.click("#add")
    page.fill("#steps", "8")
    page.click("#render")
    page.wait_for_function("document.querySelector('#status').textContent.includes('done')"
                           " && document.querySelectorAll('#results img').length == 2", timeout=120_000)
    captions = [c.text_content() for c in page.query_selector_all("#results figcaption")]
    assert "conv3:5" in captions[0] and "conv3:6" in captions[1]
    assert errors == [], errors

    page.set_input_files("#photo", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": b"not an image"}])
    page.click("#dream")
    page.wait_for_function("document.querySelector('#dream-error').textContent.length > 0")
    assert "not an image Pillow can read" in page.text_content("#dream-error")
    assert page.get_attribute("#photo", "aria-invalid") == "true"  # the field at fault is marked
    assert all("status of 400" in error for error in errors), errors  # only the refused upload's response

    page.set_input_files("#photo", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": png((64, 48))}])
    page.fill("#dream-steps", "4")
    page.click("#dream")
    page.wait_for_function("document.querySelector('#status').textContent.includes('dream done')", timeout=120_000)
    assert page.text_content("#dream-error") == "" and page.get_attribute("#photo", "aria-invalid") is None

    page.click("#runs a")
    frame = page.frame_locator("#atlas-view")
    assert "run1 gallery" in frame.locator("#gallery").text_content(timeout=30_000)
    if os.environ.get("PVF_SCREENSHOT"):
        page.screenshot(path=os.environ["PVF_SCREENSHOT"], full_page=True)
    page.close()


def open_page(browser, url):
    """The app's page, once it lists the layers."""
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('#layer option').length > 0")
    return page


def start_rendering(page, steps="4096"):
    """Click render (at 48 px) and wait until the page shows its steps."""
    page.fill("#steps", steps)
    page.fill("#size", "48")
    page.click("#render")
    page.wait_for_function("document.querySelector('#status').textContent.includes('render: step')", timeout=60_000)


def test_page_stops_its_render(browser, server):
    page = open_page(browser, server)
    errors = collect_page_errors(page)
    assert page.is_disabled("#stop")
    start_rendering(page)
    page.click("#stop")
    page.wait_for_function("document.querySelector('#status').textContent.includes('render stopped at step')",
                           timeout=30_000)
    assert page.is_enabled("#render") and page.is_disabled("#stop") and errors == [], errors
    page.close()


def test_page_says_when_the_server_dies_mid_render(browser):
    process, url = start_server()
    try:
        page = open_page(browser, url)
        start_rendering(page)
    finally:
        process.kill()
        process.wait(timeout=30)
    page.wait_for_function("document.querySelector('#render-error').textContent.length > 0", timeout=30_000)
    assert page.text_content("#render-error") == "lost the connection to the server"
    assert "lost the connection" in page.text_content("#status")
    assert page.is_enabled("#render") and page.is_disabled("#stop")
    page.close()


def test_page_reads_numbers_as_typed_and_refuses_bad_ones(browser, server):
    page = open_page(browser, server)
    sent = []
    page.on("request", lambda request: sent.append(request.post_data_json) if request.method == "POST" else None)
    for field, typed, message in [("#steps", "2.5", "steps must be an integer in 1–4096, got 2.5"),
                                  ("#lr", "-1", "lr must be a number in 0–∞, got -1"),
                                  ("#index", "", "unit must be an integer in 0–63, got empty"),
                                  ("#steps", "5000", "steps must be an integer in 1–4096, got 5000")]:
        before = page.input_value(field)
        page.fill(field, typed)
        page.click("#render")
        page.wait_for_function("document.querySelector('#render-error').textContent.length > 0")
        assert page.text_content("#render-error") == message and page.is_enabled("#render")
        marked = page.eval_on_selector_all("[aria-invalid=true]", "inputs => inputs.map((i) => '#' + i.id)")
        assert marked == [field]  # that field and no other is marked, until it is edited
        page.fill(field, before)
        assert page.get_attribute(field, "aria-invalid") is None
    page.fill("#index", "")
    page.click("#add")
    assert page.text_content("#render-error") == "unit must be an integer in 0–63, got empty"
    assert page.query_selector_all("#compare li") == [] and sent == []
    page.fill("#index", "2")
    page.fill("#seed", "1e3")
    start_rendering(page, steps="1e3")
    page.click("#stop")
    assert sent[0]["settings"]["steps"] == 1000 and sent[0]["seed"] == 1000 and sent[0]["units"][0]["index"] == 2
    page.wait_for_function("document.querySelector('#status').textContent.includes('stopped')", timeout=30_000)
    page.close()


def test_page_refuses_a_duplicate_pick_and_more_than_16(browser, server):
    page = open_page(browser, server)
    page.select_option("#layer", "conv3")
    page.fill("#index", "3")
    page.click("#add")
    page.click("#add")
    assert page.text_content("#render-error") == "conv3:3 channel is already in the comparison"
    for index in range(4, 4 + MAX_UNITS):
        page.fill("#index", str(index))
        page.click("#add")
    assert len(page.query_selector_all("#compare li")) == MAX_UNITS
    assert page.text_content("#render-error") == f"at most {MAX_UNITS} units, you have {MAX_UNITS}: remove one first"
    page.close()
