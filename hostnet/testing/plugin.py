"""pytest fixtures for code that uses hostnet (registered through ``pytest11``).

- ``hostnet_fake``: a Controller on the fake backend with its own temporary state. No
  root needed.
- ``hostnet_host``: as root, a :class:`hostnet.testing.Sandbox` on the real kernel: a
  throwaway host namespace (``.host``) and a Controller for it (``.controller``) with
  its own temporary state. Skipped without root.
- ``hostnet_sandbox``: the same test twice, on a fake Sandbox and on a real one
  (as root; skipped without): one test body for both backends.

A Sandbox deletes afterwards, even when the test failed, every namespace whose name
starts with ``.prefix`` (use ``.name()``) and every other namespace made for its host,
after killing the processes still running in them. When a session starts (as root),
what Sandboxes of test processes killed outright left is swept (``sweep_sandboxes``).
Parallel use (pytest-xdist) is covered in docs/testing.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostnet.testing.world import Sandbox


@pytest.fixture
def hostnet_fake(tmp_path: Path) -> Iterator[object]:
    from hostnet.controller import Controller

    # the fake's root namespace is no real machine's: forwarding may be turned on there
    ctl = Controller(
        backend="fake", state_dir=tmp_path / "hostnet-fake-controller", forwarding=True
    )
    yield ctl
    ctl.close()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove what Sandboxes of test processes that were killed outright left (an
    xdist worker that crashed or timed out, a cancelled CI job): their namespaces and
    the servers still running there. Live sessions' Sandboxes are left alone."""
    if os.geteuid() != 0:
        return
    from hostnet.testing.world import sweep_sandboxes

    swept = sweep_sandboxes()
    if swept:
        print(f"hostnet: removed what {len(swept)} sandbox(es) of dead test processes left")


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for the real kernel")


@pytest.fixture
def hostnet_host(tmp_path: Path) -> Iterator[Sandbox]:
    _needs_root()
    box = Sandbox(tmp_path / "hostnet-host")
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(params=["fake", "netlink"])
def hostnet_sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sandbox]:
    if request.param == "netlink":
        _needs_root()
    box = Sandbox(tmp_path / f"hostnet-sandbox-{request.param}", backend=request.param)
    try:
        yield box
    finally:
        box.close()
