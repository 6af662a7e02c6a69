"""pytest fixtures for code that uses hostnet (registered through ``pytest11``).

- ``hostnet_fake``: a Controller on the fake backend with its own temporary state. No
  root needed.
- ``hostnet_host``: as root, a throwaway host namespace (``.host``) and a Controller
  for it (``.controller``) with its own temporary state; every namespace whose name
  starts with ``.prefix`` (use ``.name()``) is deleted afterwards, even when the test
  fails, and processes still running in them are killed first. Skipped without root.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostnet.testing.world import remove_prefixed, unique_prefix


class _Host:
    """A throwaway host namespace; names made with ``name()`` are cleaned up."""

    def __init__(self, tmp: Path) -> None:
        from hostnet.backends.netlink import NetlinkBackend
        from hostnet.controller import Controller

        self.prefix = unique_prefix("hp")
        self.backend = NetlinkBackend()
        self.host = f"{self.prefix}host"
        # made through hostnet, so the host is a namespace hostnet manages (and may turn
        # IP forwarding on in)
        try:
            with Controller(state_dir=tmp / "state", backend=self.backend) as maker:
                maker.create_namespace(self.host)
            self.controller = Controller(
                state_dir=tmp / "state", host=self.host, backend=self.backend
            )
        except BaseException:
            remove_prefixed(self.backend, self.prefix)
            self.backend.close()
            raise
        self._n = 0

    def name(self, hint: str = "ns") -> str:
        self._n += 1
        return f"{self.prefix}{hint}{self._n}"

    def close(self) -> None:
        self.controller.close()
        problems = remove_prefixed(self.backend, self.prefix)
        self.backend.close()
        if problems:
            raise problems[0]


@pytest.fixture
def hostnet_fake(tmp_path: Path) -> Iterator[object]:
    from hostnet.controller import Controller

    ctl = Controller(backend="fake", state_dir=tmp_path / "state")
    yield ctl
    ctl.close()


@pytest.fixture
def hostnet_host(tmp_path: Path) -> Iterator[_Host]:
    if os.geteuid() != 0:
        pytest.skip("needs root for the real kernel")
    host = _Host(tmp_path)
    try:
        yield host
    finally:
        host.close()
