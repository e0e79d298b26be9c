"""The execution an atlas runs with, decided once and kept in run.json.

'auto' precision / memory format / batch size are decided by timing (the engine's autotune),
and timing noise can flip a close choice. An atlas therefore decides once and records the
choice in run.json; a resumed run, every ``--shard`` process and every torchrun rank reuse that
record, so one atlas never mixes executions.

>>> record = settle_execution(run, dist, decide=lambda: pvf.choose_execution(model, units).record())
"""
import fcntl


def settle_execution(run, dist, decide) -> dict | None:
    """The recorded execution of ``run`` (a RunDir), else ``decide()``'s, recorded now.

    Rank 0 reads or decides under a lock (concurrent ``--shard`` processes in one directory wait
    for the first one's choice) and every rank gets the same record. A failure to decide is
    raised on every rank, so none is left waiting. ``decide`` None: nothing to settle (None)."""
    if decide is None:
        return None
    record, error = None, None
    if dist.is_main:
        try:
            with open(run.root / ".execution.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                record = run.execution_record()
                if record is None:
                    record = decide()
                    run.record_execution(record)
        except Exception as caught:  # noqa: BLE001  (re-raised below, after the other ranks know)
            error = caught
    shared = dist.broadcast({"record": record, "error": None if error is None else f"{type(error).__name__}: {error}"})
    if error is not None:
        raise error
    if shared["error"] is not None:
        raise RuntimeError(f"rank 0 could not decide the execution: {shared['error']}")
    return shared["record"]
