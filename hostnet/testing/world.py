"""Throwaway namespaces for tests: unique names, removed even when the test fails."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hostnet import errors
from hostnet.backends.base import Backend
from hostnet.ops import CreateNamespace, DeleteNamespace


def unique_prefix(tag: str = "hn") -> str:
    """A short prefix unlikely to clash with anything else on the machine."""
    return f"{tag}{os.getpid() % 1000:03d}{secrets.token_hex(2)}"


#: Where a Sandbox on the real kernel notes its prefix and the process that owns it, so
#: that what a test process killed outright left behind (an xdist worker that crashed
#: or timed out, a cancelled CI job) can be told from a live one's: ``sweep_sandboxes``.
SANDBOXES = Path("/run/hostnet/sandboxes")
_SANDBOX_PREFIX = re.compile(r"hp[0-9]{3}[0-9a-f]{4}")


def free_prefix(backend: Backend, tag: str = "hn") -> str:
    """A ``unique_prefix`` that no namespace of ``backend`` (and no noted Sandbox)
    starts with yet: 65,536 prefixes per process id are few enough to repeat."""
    names = backend.namespaces()
    while True:
        prefix = unique_prefix(tag)
        if not any(n.startswith(prefix) for n in names) and not (SANDBOXES / prefix).exists():
            return prefix


def _note_owner(prefix: str) -> Path:
    from hostnet.executor import process_started

    SANDBOXES.mkdir(parents=True, exist_ok=True)
    note = SANDBOXES / prefix
    note.write_text(json.dumps({"pid": os.getpid(), "started": process_started(os.getpid())}))
    return note


def sweep_sandboxes(backend: Backend | None = None) -> list[str]:
    """Delete the namespaces (and end the processes in them) of Sandboxes whose process
    died without closing them, as noted in ``SANDBOXES``; return their prefixes. Live
    processes' Sandboxes are left alone. The pytest plugin does this when a session
    starts, as root."""
    from hostnet.executor import process_started

    if not SANDBOXES.is_dir():
        return []
    own = backend is None
    if backend is None:
        from hostnet.backends import open_backend

        backend = open_backend("netlink")
    swept = []
    try:
        for note in sorted(SANDBOXES.iterdir()):
            if not _SANDBOX_PREFIX.fullmatch(note.name):
                continue  # not a Sandbox's: never a prefix that could match others
            try:
                owner = json.loads(note.read_text())
                alive = process_started(int(owner["pid"])) == owner["started"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being written, or gone meanwhile
            if alive:
                continue
            if not remove_prefixed(backend, note.name):
                note.unlink(missing_ok=True)
            swept.append(note.name)
    finally:
        if own:
            backend.close()
    return swept


def end_processes(backend: Backend, name: str) -> None:
    """SIGKILL the processes running in namespace ``name`` (a test's own: a server it
    started and did not stop) and wait until they are out of it. Left running, they
    would keep the namespace alive, and with it its links, after its name goes."""
    pids = backend.processes(name)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    if pids:  # an exiting process leaves its namespaces before it is reaped
        wait_until(lambda: not backend.processes(name), timeout=2.0)


def delete_namespace(backend: Backend, name: str) -> None:
    """Delete a test's namespace, ending the processes still in it first."""
    try:
        end_processes(backend, name)
    except errors.NotFoundError:
        pass
    backend.apply(DeleteNamespace(ns=name))


def remove_prefixed(backend: Backend, prefix: str) -> list[BaseException]:
    """Delete every namespace whose name starts with ``prefix`` (ending the processes
    in it), going past errors (every one must go); returns them. One already gone is
    not an error."""
    problems: list[BaseException] = []
    for name in backend.namespaces():
        if name.startswith(prefix):
            try:
                delete_namespace(backend, name)
            except errors.NotFoundError:
                pass
            except Exception as exc:
                problems.append(exc)
    return problems


def without_namespace(dump: dict[str, Any], name: str) -> dict[str, Any]:
    """A store dump (``LocalStore.dump``) without the records of namespace ``name`` (its
    record, identity and lease): for comparing a store before a namespace was made with
    the store after calls that should have changed nothing else."""
    owner = f"ns:{name}"
    out = dict(dump)
    out["namespaces"] = [r for r in dump["namespaces"] if r[0] != name]
    out["idents"] = [r for r in dump["idents"] if r[0] != owner]
    out["leases"] = [r for r in dump["leases"] if r[0] != owner]
    return out


class World:
    """Creates namespaces with one unique prefix and deletes all of them on cleanup."""

    def __init__(self, backend: Backend, tag: str = "hn") -> None:
        self.backend = backend
        self.prefix = unique_prefix(tag)
        self._count = 0
        self.created: list[str] = []

    def name(self, hint: str = "") -> str:
        self._count += 1
        return f"{self.prefix}{hint}{self._count}"

    def ns(self, hint: str = "") -> str:
        name = self.name(hint)
        self.backend.apply(CreateNamespace(ns=name))
        self.created.append(name)
        return name

    def cleanup(self) -> list[BaseException]:
        problems: list[BaseException] = []
        for name in reversed(self.created):
            try:
                delete_namespace(self.backend, name)
            except errors.NotFoundError:
                pass
            except Exception as exc:  # keep going: every namespace must go
                problems.append(exc)
        # Anything else with our prefix (made by the code under test) goes too.
        problems += remove_prefixed(self.backend, self.prefix)
        self.created.clear()
        return problems


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; return its last value.

    For kernel effects that are asynchronous (a namespace is destroyed by a workqueue
    after its last reference goes, which is when its veth peers disappear)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


class Sandbox:
    """A throwaway host namespace made through hostnet, with a Controller for it on
    ``backend`` ("netlink": the real kernel, as root; "fake": an in-memory one). Both
    kinds behave alike: the host is a namespace hostnet created, so bridge networks may
    turn IP forwarding on in it without being told. ``kind`` is the backend's name.
    ``state_dir`` is the Controller's, for code that opens a Controller of its own:
    pass it ``backend=box.backend`` (a fake kernel lives in this process only, so
    ``backend="fake"`` would be another, empty one; ``hostnet --state-dir`` works on
    the real kernel only). A context manager: ``with Sandbox(path) as box:``."""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __init__(self, state_dir: Path, backend: str = "netlink") -> None:
        from hostnet.backends import open_backend
        from hostnet.controller import Controller

        self.kind = backend
        self.backend = open_backend(backend)
        self.prefix = free_prefix(self.backend, "hp")
        self.host = f"{self.prefix}host"
        self.state_dir = state_dir
        self._note: Path | None = None
        made = False
        try:
            if backend == "netlink":
                self._note = _note_owner(self.prefix)
            with Controller(state_dir=state_dir, backend=self.backend) as maker:
                maker.create_namespace(self.host)
            made = True
            self.controller = Controller(state_dir=state_dir, host=self.host, backend=self.backend)
        except BaseException:
            if made:  # (not when the name was taken: then the namespaces are another's)
                remove_prefixed(self.backend, self.prefix)
            if self._note is not None:
                self._note.unlink(missing_ok=True)
            self.backend.close()
            raise
        self._n = 0

    def name(self, hint: str = "ns") -> str:
        """A namespace name unique to this sandbox (deleted afterwards)."""
        self._n += 1
        return f"{self.prefix}{hint}{self._n}"

    def __repr__(self) -> str:
        return f"<Sandbox {self.kind} host={self.host!r}>"

    def close(self) -> None:
        # (a state directory may be shared: only namespaces made for this host)
        made = [
            r["name"]
            for r in self.controller.store.read(lambda tx: tx.namespaces())
            if r["created"] and r["host"] == self.host and not r["name"].startswith(self.prefix)
        ]
        problems: list[BaseException] = []
        for name in made:  # named otherwise than with name(): still this test's
            try:
                if self.controller.namespace(name, adopt=False).managed:
                    delete_namespace(self.backend, name)
            except errors.NotFoundError:
                pass
            except Exception as exc:
                problems.append(exc)
        self.controller.close()
        problems += remove_prefixed(self.backend, self.prefix)
        self.backend.close()
        if self._note is not None and not problems:
            self._note.unlink(missing_ok=True)
        if problems:
            raise problems[0]
