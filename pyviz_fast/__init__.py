"""pyviz_fast: fast feature visualization for PyTorch vision models."""
from pyviz_fast import ops, zoo
from pyviz_fast._ext import build_info, has_ops
from pyviz_fast.backend import get_default_backend, set_default_backend
from pyviz_fast.engine import (LayerInfo, Renderer, RenderResult, Settings, StepInfo, Unit, accentuate, caricature,
                               choose_execution, dream, dream_zoom, layers, load_model, model_fingerprint, parse_units,
                               render, style_transfer)
from pyviz_fast.engine.allocator import keep_freed_memory
from pyviz_fast.engine.display import show

__version__ = "0.1.0"
__all__ = ["ops", "zoo", "build_info", "has_ops", "get_default_backend", "set_default_backend",
           "render", "show", "accentuate", "caricature", "style_transfer", "choose_execution", "layers", "LayerInfo",
           "Settings", "parse_units", "load_model", "model_fingerprint", "RenderResult", "StepInfo", "Unit",
           "Renderer", "dream", "dream_zoom", "keep_freed_memory"]
