"""The backend contract on the fake and, as root, on the real kernel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hostnet.backends.fake import FakeKernel
from hostnet.testing.contract import BackendContract
from tests.conftest import needs_root


class TestFakeBackend(BackendContract):
    @pytest.fixture
    def backend(self) -> Iterator[FakeKernel]:
        kernel = FakeKernel(seed=7)
        yield kernel
        kernel.close()


@needs_root
@pytest.mark.kernel
class TestNetlinkBackend(BackendContract):
    @pytest.fixture
    def backend(self) -> Iterator[object]:
        from hostnet.backends.netlink import NetlinkBackend

        kernel = NetlinkBackend()
        yield kernel
        kernel.close()
