"""What a command gets to work with: the parsed options, a Controller, and output.

The Controller is opened lazily (``version`` needs none) through a factory, so tests can
hand every ``main()`` call a Controller on one shared fake kernel::

    kernel = FakeKernel()
    main(argv, controller_factory=lambda opts: open_controller(opts, backend=kernel))
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import attrs
from attrs import frozen

from hostnet.backends.base import Backend
from hostnet.controller import Controller
from hostnet.policy.security import SecurityPolicy


@frozen(kw_only=True)
class ControllerOptions:
    """How the command line asks for a Controller (the global options)."""

    state_dir: Path | None = None
    host: str | None = None
    backend: str = "auto"
    policy: SecurityPolicy = attrs.field(factory=SecurityPolicy)
    # Read-only commands (ls, inspect, ports, audit) and gc open without recovery: a
    # look at the state must not change it, and gc reports what it recovers itself.
    recover: bool = True
    # None: the Controller's default (on for a named host namespace, off for this one).
    forwarding: bool | None = None


ControllerFactory = Callable[[ControllerOptions], Controller]


def open_controller(options: ControllerOptions, backend: Backend | None = None) -> Controller:
    """The default factory; ``backend`` overrides ``options.backend`` (tests pass one
    FakeKernel to several calls; the Controller then leaves it open).

    "auto" is the kernel here even without root, unlike the library's "auto": a fake
    kernel dies with the command, so a command on it would report success for nothing
    (while the store kept its records); without root the kernel says what is missing."""
    kind = "netlink" if options.backend == "auto" else options.backend
    return Controller(
        state_dir=options.state_dir,
        host=options.host,
        backend=backend if backend is not None else kind,
        policy=options.policy,
        recover=options.recover,
        forwarding=options.forwarding,
    )


class Context:
    """One command's view of the world: options, Controller, stdout and stderr."""

    def __init__(
        self,
        options: ControllerOptions,
        *,
        json_output: bool,
        factory: ControllerFactory = open_controller,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.options = options
        self.json = json_output
        self._factory = factory
        self._controller: Controller | None = None
        # Resolved now, not at import, so pytest's capsys sees the output.
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr

    @property
    def controller(self) -> Controller:
        if self._controller is None:
            self._controller = self._factory(self.options)
        return self._controller

    def close(self) -> None:
        if self._controller is not None:
            ctl, self._controller = self._controller, None
            ctl.close()

    def emit(self, data: Any, human: str) -> None:
        """Print ``data`` as JSON with --json, else the human rendering of it."""
        text = json.dumps(data, indent=2) if self.json else human
        if text:
            print(text, file=self.stdout)

    def warn(self, message: str) -> None:
        self._say(f"hostnet: warning: {message}")

    def error(self, message: str) -> None:
        self._say(f"hostnet: error: {message}")

    def _say(self, line: str) -> None:
        if self.stderr is None:  # (started with it closed: print would use stdout)
            return
        try:
            print(line, file=self.stderr)
        except OSError:  # stderr closed (`2>&-`) or gone: the exit code still tells
            pass


__all__ = ["Context", "ControllerFactory", "ControllerOptions", "open_controller"]
