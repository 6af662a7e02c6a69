"""What hostnet ships for testing code that uses it.

- :class:`hostnet.backends.fake.FakeKernel` (re-exported here): the in-memory kernel.
- :mod:`hostnet.testing.contract`: the backend contract suite. A custom backend proves
  itself by subclassing ``BackendContract`` and providing a ``backend`` fixture.
- :mod:`hostnet.testing.faults`: a backend wrapper that fails chosen ops, for
  fault-injection tests of plans and rollback.
- :mod:`hostnet.testing.plugin`: pytest fixtures (``hostnet_fake``, ``hostnet_host``)
  registered through the ``pytest11`` entry point.

Needs pytest (the ``test`` extra) for the contract suite and the plugin.
"""

from __future__ import annotations

from hostnet.backends.fake import FakeKernel
from hostnet.testing.faults import FaultyBackend, InjectedFault
from hostnet.testing.world import World, unique_prefix

__all__ = ["FakeKernel", "FaultyBackend", "InjectedFault", "World", "unique_prefix"]
