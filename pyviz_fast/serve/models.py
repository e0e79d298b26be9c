"""The models a server may use: only the specs it was started with, each loaded on first use and
rendering one job at a time (a FIFO queue of one worker thread per model), so concurrent
requests never oversubscribe the machine.

>>> models = ModelRegistry(["shapesnet"])
>>> models.layers("shapesnet")[0]
{'name': 'conv1', 'type': 'ConvBlock', 'shape': [16, 64, 64], 'channels': 16, 'calls': 1, 'kinds': ['channel', 'neuron', 'layer']}
"""
import threading
from concurrent.futures import ThreadPoolExecutor

from pyviz_fast.engine.layers import layers as engine_layers
from pyviz_fast.engine.models import input_channels, load_model

# the kinds the page offers, by the rank of a layer's output (without batch)
KINDS_BY_RANK = {3: ["channel", "neuron", "layer"], 2: ["channel", "neuron", "layer"], 1: ["class", "channel"]}
LISTING_SIZE = 128  # px of the probe that lists the layers (names and channels do not depend on it)


class UnknownModel(ValueError):
    """A model spec the server was not started with."""


class ModelRegistry:
    def __init__(self, specs, device="cpu"):
        if not specs:
            raise ValueError("give at least one model spec")
        self.specs = list(dict.fromkeys(specs))
        self.device = device
        self._models, self._layers = {}, {}
        self._lock = threading.Lock()
        self._queues = {spec: ThreadPoolExecutor(max_workers=1, thread_name_prefix="render") for spec in self.specs}

    def check(self, spec):
        if spec not in self._queues:
            raise UnknownModel(f"model {spec!r} is not served; this server has: {', '.join(self.specs)}")
        return spec

    def model(self, spec):
        """The loaded nn.Module of an allowed spec (loaded once)."""
        self.check(spec)
        with self._lock:
            if spec not in self._models:
                self._models[spec] = load_model(spec, device=self.device)[0]
            return self._models[spec]

    def layers(self, spec):
        """[{name, type, shape, channels, calls, kinds}] of the layers whose units the page can pick."""
        model = self.model(spec)
        with self._lock:
            if spec not in self._layers:
                infos = engine_layers(model, input_size=(input_channels(model), LISTING_SIZE, LISTING_SIZE))
                self._layers[spec] = [
                    {"name": info.name, "type": info.type, "shape": list(info.shape), "channels": info.channels,
                     "calls": info.calls, "kinds": KINDS_BY_RANK[len(info.shape)]}
                    for info in infos if info.shape is not None and info.channels and len(info.shape) in KINDS_BY_RANK]
            return self._layers[spec]

    def submit(self, spec, fn):
        """Run ``fn()`` on the model's queue (after the renders already queued there); a Future."""
        return self._queues[self.check(spec)].submit(fn)

    def close(self):
        for queue in self._queues.values():
            queue.shutdown(wait=False, cancel_futures=True)
