"""What hostnet ships for testing code that uses it.

- :class:`hostnet.backends.fake.FakeKernel` (re-exported here): the in-memory kernel.
- :mod:`hostnet.testing.contract`: the backend contract suite. A custom backend proves
  itself by subclassing ``BackendContract`` and providing a ``backend`` fixture.
- :mod:`hostnet.testing.faults`: a backend wrapper that fails chosen ops, for
  fault-injection tests of plans and rollback.
- :mod:`hostnet.testing.plugin`: pytest fixtures (``hostnet_fake``, ``hostnet_host``,
  ``hostnet_sandbox``) registered through the ``pytest11`` entry point.
- :class:`Sandbox`: a throwaway host namespace and a Controller for it, on either
  backend, cleaned up with everything made in it (what ``hostnet_host`` yields).

Needs pytest (the ``test`` extra) for the contract suite and the plugin.
"""

from __future__ import annotations

from hostnet.backends.fake import FakeKernel
from hostnet.testing.faults import FaultyBackend, InjectedFault
from hostnet.testing.world import Sandbox, World, sweep_sandboxes, unique_prefix

__all__ = [
    "FakeKernel",
    "FaultyBackend",
    "InjectedFault",
    "Sandbox",
    "World",
    "sweep_sandboxes",
    "unique_prefix",
]
