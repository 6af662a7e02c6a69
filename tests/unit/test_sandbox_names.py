"""Names of throwaway namespaces (hostnet.testing.world), without a kernel."""

from __future__ import annotations


def test_a_prefix_in_use_is_never_handed_out_again(monkeypatch) -> None:
    from hostnet.backends.fake import FakeKernel
    from hostnet.ops import CreateNamespace
    from hostnet.testing import world

    kernel = FakeKernel(seed=1)
    kernel.apply(CreateNamespace(ns="hp000aaaahost"))
    drawn = iter(["hp000aaaa", "hp000aaaa", "hp000bbbb"])
    monkeypatch.setattr(world, "unique_prefix", lambda tag: next(drawn))
    assert world.free_prefix(kernel, "hp") == "hp000bbbb"
