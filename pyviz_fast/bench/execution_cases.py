"""Each fixed execution beside 'auto' on one case: does the measured choice run at the best
fixed execution's speed on this machine?

Rows (section ``execution``): one per fixed execution the device offers (precision x memory
format), then ``auto, first call`` (a fresh decision: its trial included) and ``auto`` (later
calls: the decision cached), all against the best fixed execution of the same run. The fixed
executions and the cached 'auto' are timed in interleaved rounds, so a change of machine load
hits them alike.

>>> rows = execution_rows(model, "googlenet", "inception4a:0-15", size=128, steps=64)
>>> print(format_ratio_table(rows))
"""
import statistics

import pyviz_fast as pvf
from pyviz_fast.bench.results import Row
from pyviz_fast.bench.timing import time_once
from pyviz_fast.engine import autotune

AUTO, FIRST = "auto", "auto, first call"


def execution_rows(model, model_name, units, *, size, steps, device="cpu", backend="auto", rounds=2, seed=0):
    """Rows of image-steps/s for every fixed execution, 'auto' fresh and 'auto' cached."""
    base = pvf.Settings(size=size, steps=steps, batch_size=len(pvf.parse_units(units, model=model)))
    fixed = {str(e): base.replace(precision=e.precision, memory_format=e.memory_format)
             for e in autotune.candidates(base, device)}

    def timed(settings):
        result, seconds = time_once(lambda: pvf.render(model, units, settings, backend=backend, device=device,
                                                       seed=seed, progress=False), device=device)
        return len(result.units) * steps / seconds, result

    pvf.render(model, units, base.replace(steps=2, precision="fp32", memory_format="contiguous"), backend=backend,
               device=device, seed=seed)  # primes oneDNN and the allocator for everyone
    autotune.clear_cache()
    first_rate, first = timed(base)
    rates = {name: [] for name in [*fixed, AUTO]}
    for _ in range(rounds):
        for name, settings in [*fixed.items(), (AUTO, base)]:
            rates[name].append(timed(settings)[0])
    medians = {name: statistics.median(values) for name, values in rates.items()}
    best = max(fixed, key=medians.get)
    case = f"{model_name} {units} {size}px {steps} steps B={base.batch_size}"
    params = {"model": model_name, "units": units, "size": size, "steps": steps, "batch": base.batch_size}
    rows = [Row("execution", case, name, medians[name], "image-steps/s", runs=rounds, params=params,
                baseline=None if name == best else best, extra={"best_fixed": name == best}) for name in fixed]
    chosen = first.info["execution"]
    rows.append(Row("execution", case, FIRST, first_rate, "image-steps/s", runs=1, params=params, baseline=best,
                    extra={"chose": f"{chosen['precision']}/{chosen['memory_format']}", "trial": chosen["trials"]}))
    rows.append(Row("execution", case, AUTO, medians[AUTO], "image-steps/s", runs=rounds, params=params,
                    baseline=best, extra={"chose": f"{chosen['precision']}/{chosen['memory_format']}"}))
    return rows
