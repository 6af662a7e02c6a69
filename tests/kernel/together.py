"""Several processes released at the same moment: the race tests' starting gun."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence


def run_together(
    script: str, argvs: Sequence[Sequence[str]], *, accept: tuple[str, ...] = ("ok",)
) -> list[str]:
    """Start ``python -c script ARGV...`` once per ``argvs`` item; each prints "ready",
    then waits for a line on stdin, which all get at once. Returns what each printed
    after that; each must start with one of ``accept``."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    try:
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            assert line == "ready", child.stderr.read() if child.stderr else line
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for (out, err), argv in zip(outputs, argvs, strict=True):
        assert out.strip().startswith(accept), f"{list(argv)}: {out} {err}"
    return [out.strip() for out, _ in outputs]
