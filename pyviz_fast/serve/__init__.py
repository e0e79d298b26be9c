"""The local web app (``pyviz-fast serve``): pick a layer and unit, watch its visualization form
step by step, compare units side by side, DeepDream an uploaded photo, browse atlas runs.

Thin Starlette routes (``app.py``) over the library: ``models.py`` loads only the model specs the
server was started with and runs one render at a time per model (a queue); ``jobs.py`` holds a
render's progress as its ``callback`` reports it, streamed to the page as server-sent events;
``inputs.py`` checks everything a client sends; ``runs.py`` serves atlas run directories.

>>> app = create_app(["shapesnet"], runs=["audit/run1"])     # an ASGI app (uvicorn, TestClient)
>>> serve(app, host="127.0.0.1", port=8000)                   # blocks; CannotListen (PortInUse if taken)
"""
from pyviz_fast.serve.app import create_app
from pyviz_fast.serve.server import CannotListen, PortInUse, serve, url

__all__ = ["create_app", "serve", "url", "CannotListen", "PortInUse"]
