"""The render engine: units, objectives, truncated forward, the regularized ascent loop.

Public names are re-exported by ``pyviz_fast``: render, accentuate, caricature, style_transfer,
choose_execution, layers, Settings, parse_units, load_model, model_fingerprint, RenderResult,
StepInfo, Unit, LayerInfo.
"""
from pyviz_fast.engine.accentuate import accentuate, caricature
from pyviz_fast.engine.layers import LayerInfo, layers
from pyviz_fast.engine.models import fingerprint as model_fingerprint, load_model
from pyviz_fast.engine.render import StepInfo, choose_execution, render
from pyviz_fast.engine.result import RenderResult
from pyviz_fast.engine.settings import Settings
from pyviz_fast.engine.style_transfer import style_transfer
from pyviz_fast.engine.units import Unit, parse_units

__all__ = ["render", "accentuate", "caricature", "style_transfer", "choose_execution", "layers", "LayerInfo",
           "Settings", "parse_units", "load_model", "model_fingerprint", "RenderResult", "StepInfo", "Unit"]
