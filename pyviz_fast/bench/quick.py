"""The short benchmark behind ``pyviz-fast bench``: fused vs reference on the ascent step and end
to end, with the model's forward+backward ceiling, and every fixed execution beside 'auto', in
about a minute on a 2-core CPU.

>>> rows = run_quick_bench(device="cpu")
>>> print(format_ratio_table(rows))
"""
import torch

from pyviz_fast.backend import resolve_backend
from pyviz_fast.bench.execution_cases import execution_rows
from pyviz_fast.bench.op_cases import op_rows
from pyviz_fast.bench.render_cases import EXECUTIONS, e2e_rows, layer_channels

QUICK_TIMING = {"min_time_s": 0.5, "max_time_s": 5.0}


def available_backends(device) -> tuple:
    """('fused', 'reference') when the fused kernels are built and registered for ``device``
    (the engine's own check), else ('reference',)."""
    try:
        resolve_backend("fused", torch.device(device))
    except RuntimeError:
        return ("reference",)
    return ("fused", "reference")


def run_quick_bench(model=None, *, device="cpu", batch=16, size=128, units="conv3:0-7", steps=16,
                    model_name="shapesnet", executions=("fp32", "fastest"), auto_steps=64) -> list:
    """Rows (``pyviz_fast.bench.results.Row``) of the short benchmark.

    - ops: the fused ascent step on [batch, 3, size, size] float32, each backend (images/s);
    - e2e: ``render`` of ``units`` (channels of one layer of ``model``, default the shipped
      ShapesNet) at ``size`` px for ``steps`` steps, each backend, beside the bare truncated
      forward+backward ceiling, for each execution in ``executions`` ('fp32' = fp32 NCHW,
      'fastest' = bf16 autocast + channels_last);
    - execution: the same render under every fixed execution and under 'auto' (its first call,
      with the trial, and later calls), against the best fixed one: ``auto_steps`` steps, enough
      for 'auto' to run its trial.
    Backends the device lacks are left out. Print with ``format_ratio_table(rows)``.
    """
    if model is None:
        from pyviz_fast.zoo import shapesnet
        model = shapesnet()
    backends = available_backends(device)
    rows = op_rows("fused_ascent_step", batch=batch, size=size, dtype=torch.float32, device=device,
                   backends=backends, timing=QUICK_TIMING)
    layer, channels = layer_channels(units, model)
    for name in executions:
        rows += e2e_rows(model, model_name, layer, channels, size=size, steps=steps, execution=EXECUTIONS[name],
                         device=device, backends=backends, timing={"max_time_s": 10.0})
    return rows + execution_rows(model, model_name, units, size=size, steps=max(steps, auto_steps), device=device,
                                 backend=backends[0])
