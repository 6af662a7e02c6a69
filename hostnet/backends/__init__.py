"""Backends: the one seam between hostnet's pure logic and a kernel.

``netlink`` talks to the real kernel (pyroute2 and libnftables); ``fake`` is an
in-memory model of the kernel for tests without root. Both satisfy
:class:`hostnet.backends.base.Backend`, and both pass :mod:`hostnet.testing.contract`.
"""

from __future__ import annotations

from hostnet.backends.base import Backend

__all__ = ["Backend", "open_backend"]


def open_backend(kind: str = "auto") -> Backend:
    """Return a backend: "netlink" (the kernel), "fake" (in memory), or "auto"
    (netlink when running as root, else fake)."""
    import os

    if kind == "auto":
        kind = "netlink" if os.geteuid() == 0 else "fake"
    if kind == "netlink":
        from hostnet.backends.netlink import NetlinkBackend

        return NetlinkBackend()
    if kind == "fake":
        from hostnet.backends.fake import FakeKernel

        return FakeKernel()
    from hostnet.errors import InvalidOption

    raise InvalidOption("backend", kind, "expected 'netlink', 'fake' or 'auto'")
