"""Many ``python -m pyviz_fast`` commands for the price of one interpreter start.

Every subprocess of the CLI tests spends 4-6 s importing torch, torchvision and the engine before
the command runs, and most bad-input commands stop a moment later. ``run_commands`` starts one
interpreter that imports all that once, then runs each command in a child forked from it: its own
working directory, stdout, stderr and exit code, ``pyviz_fast/__main__.py`` run as
``python -m`` runs it, the exit handlers run on the way out. What importing wrote to stderr is
part of every command's stderr, as in a process of its own.

>>> done = run_commands([(["render", "conv9:1"], tmp_path)], env=ENV)[0]
>>> done.returncode, done.stderr
"""
import atexit
import importlib
import json
import os
import runpy
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path


def run_commands(commands, env=None, timeout=600):
    """[subprocess.CompletedProcess] of ``python -m pyviz_fast *args`` run in ``cwd``, for each
    (args, cwd) of ``commands``, in order."""
    commands = [[list(map(str, args)), str(cwd)] for args, cwd in commands]
    done = subprocess.run([sys.executable, __file__], input=json.dumps(commands), capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the forking runner failed ({done.returncode}): {done.stderr}")
    return [subprocess.CompletedProcess(["python", "-m", "pyviz_fast", *args], code, out, done.stderr + err)
            for (args, _), (code, out, err) in zip(commands, json.loads(done.stdout))]


def _exit_code(exit_):
    if exit_.code is None or isinstance(exit_.code, int):
        return exit_.code or 0
    print(exit_.code, file=sys.stderr)  # sys.exit("message"), as the interpreter reports it
    return 1


def _child(args, cwd, out_path, err_path):
    """Never returns: runs the command with fds 1 and 2 on the files, exits with its code."""
    code = 1
    try:
        os.chdir(cwd)
        for fd, path in ((1, out_path), (2, err_path)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.argv = [sys.argv[0], *args]  # runpy puts __main__.py in argv[0], as python -m does
        try:
            runpy.run_module("pyviz_fast", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            code = _exit_code(exit_)
        except BaseException:  # noqa: BLE001 (reported as the interpreter would, exit code 1)
            traceback.print_exc()
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run(args, cwd):
    # Files of mkstemp, not a TemporaryDirectory: the child's exit handlers run weakref finalizers,
    # and a TemporaryDirectory's would delete the directory under the parent.
    paths = [tempfile.mkstemp(prefix="cli_forks_")[1] for _ in range(2)]
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(args, cwd, *paths)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), *(Path(path).read_text() for path in paths)
    finally:
        for path in paths:
            os.unlink(path)


def main():
    commands = json.load(sys.stdin)
    for module in ("torch", "torchvision", "pyviz_fast.cli"):  # what every command imports, before the forks
        importlib.import_module(module)
    results = [_run(args, cwd) for args, cwd in commands]
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
