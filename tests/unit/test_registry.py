"""The driver registry: built-ins, registration, lazy paths, entry points, hints."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from hostnet import errors
from hostnet.controller import Controller
from hostnet.drivers import base
from hostnet.drivers.base import (
    ConnectContext,
    Driver,
    driver_class,
    get_driver,
    register_driver,
    registry,
    unregister_driver,
)
from hostnet.drivers.host import HostDriver
from hostnet.drivers.none import NoneDriver
from hostnet.ops import Plan, SetLinkUp

PLUGIN = "hn_test_plugin"


class LoDownDriver(Driver):
    """A toy third-party driver: connecting takes the namespace's lo down."""

    name = "lodown"

    def plan_connect(self, ctx: ConnectContext) -> Plan:
        return (SetLinkUp(ns=ctx.endpoint.ns, name="lo", up=False, was_up=True),)


class OtherDriver(LoDownDriver):
    name = "other"


class NotADriver:
    pass


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch):
    """Each test gets the registry as it was, and a fake plugin module to load from."""
    saved = dict(base._registry)
    monkeypatch.setattr(base, "_entry_points_loaded", False)
    monkeypatch.setattr(base, "entry_points", lambda group: [])
    module = types.ModuleType(PLUGIN)
    module.LoDownDriver = LoDownDriver  # type: ignore[attr-defined]
    module.NotADriver = NotADriver  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, PLUGIN, module)
    yield
    base._registry.clear()
    base._registry.update(saved)


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: tuple[str, str]) -> list[str]:
    groups: list[str] = []

    def entry_points(group: str) -> list[EntryPoint]:
        groups.append(group)
        return [EntryPoint(name=n, value=v, group=group) for n, v in eps]

    monkeypatch.setattr(base, "entry_points", entry_points)
    return groups


def test_builtin_drivers_are_registered() -> None:
    assert {"none", "host", "bridge", "macvlan", "overlay"} <= set(registry)
    assert driver_class("none") is NoneDriver
    assert driver_class("host") is HostDriver
    assert isinstance(get_driver("none"), NoneDriver)


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        registry["mine"] = LoDownDriver  # type: ignore[index]
    with pytest.raises(TypeError):
        del registry["none"]  # type: ignore[attr-defined]


def test_register_a_class() -> None:
    register_driver("lodown", LoDownDriver)
    assert registry["lodown"] is LoDownDriver
    assert driver_class("lodown") is LoDownDriver
    unregister_driver("lodown")
    assert "lodown" not in registry


def test_registering_a_taken_name_is_a_conflict() -> None:
    register_driver("lodown", LoDownDriver)
    with pytest.raises(errors.ConflictError, match="replace=True"):
        register_driver("lodown", OtherDriver)
    with pytest.raises(errors.ConflictError):
        register_driver("none", OtherDriver)
    assert driver_class("lodown") is LoDownDriver
    assert driver_class("none") is NoneDriver


def test_replace_overrides_deliberately() -> None:
    register_driver("lodown", LoDownDriver)
    register_driver("lodown", OtherDriver, replace=True)
    assert driver_class("lodown") is OtherDriver
    register_driver("none", OtherDriver, replace=True)
    assert driver_class("none") is OtherDriver


def test_builtins_cannot_be_unregistered() -> None:
    with pytest.raises(errors.ConflictError, match="built-in"):
        unregister_driver("host")
    unregister_driver("never-registered")  # nothing to do, no error
    assert driver_class("host") is HostDriver


def test_unknown_driver_lists_what_is_available() -> None:
    with pytest.raises(errors.DriverNotFound) as info:
        driver_class("nosuch")
    err = info.value
    assert isinstance(err, LookupError)
    assert err.name == "nosuch"
    assert {"none", "host", "bridge"} <= set(err.available)
    assert list(err.available) == sorted(err.available)
    assert err.hint is None
    assert "none" in str(err) and "host" in str(err)


def test_known_docker_drivers_hostnet_lacks_come_with_a_hint() -> None:
    with pytest.raises(errors.DriverNotFound) as info:
        get_driver("ipvlan")
    assert "macvlan" in info.value.hint
    assert "hostnet.drivers" in str(info.value)


def test_a_lazy_path_loads_on_first_use() -> None:
    register_driver("lodown", f"{PLUGIN}:LoDownDriver")
    assert registry["lodown"] == f"{PLUGIN}:LoDownDriver"
    assert driver_class("lodown") is LoDownDriver
    assert registry["lodown"] is LoDownDriver  # resolved once, then cached


def test_registering_a_lazy_path_imports_nothing() -> None:
    register_driver("later", "hn_not_installed_anywhere.drivers:Later")
    assert "hn_not_installed_anywhere" not in sys.modules


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("hn_not_installed_anywhere.drivers:Later", "is its package installed"),
        (f"{PLUGIN}:Missing", "could not be loaded"),
        (f"{PLUGIN}:NotADriver", "is not a hostnet Driver"),
    ],
)
def test_a_bad_path_is_driver_not_found_with_a_hint(path: str, words: str) -> None:
    register_driver("broken", path)
    with pytest.raises(errors.DriverNotFound) as info:
        driver_class("broken")
    assert info.value.name == "broken"
    assert words in info.value.hint
    assert path in info.value.hint


def test_entry_points_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    groups = fake_entry_points(monkeypatch, ("lodown", f"{PLUGIN}:LoDownDriver"))
    assert driver_class("lodown") is LoDownDriver
    assert groups == ["hostnet.drivers"]
    assert "lodown" in registry


def test_an_entry_point_for_the_same_registration_is_not_a_clash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_driver("lodown", f"{PLUGIN}:LoDownDriver")
    fake_entry_points(monkeypatch, ("lodown", f"{PLUGIN}:LoDownDriver"))
    with pytest.raises(errors.DriverNotFound):
        driver_class("nosuch")  # loads the entry points
    assert driver_class("lodown") is LoDownDriver


def test_a_clashing_entry_point_is_ignored_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, ("none", "evil_pkg:NoneDriver"))
    with (
        pytest.warns(errors.HostnetWarning, match="evil_pkg:NoneDriver") as caught,
        pytest.raises(errors.DriverNotFound),
    ):
        driver_class("nosuch")  # its own error, not the clash
    assert "ignored" in str(caught[0].message)
    assert driver_class("none") is NoneDriver


def test_a_clashing_entry_point_does_not_hide_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """One bad plugin must not make another's first lookup in a process fail (the CLI
    is one process per command: it failed every time)."""
    fake_entry_points(
        monkeypatch, ("none", "evil_pkg:NoneDriver"), ("lodown", f"{PLUGIN}:LoDownDriver")
    )
    with pytest.warns(errors.HostnetWarning):
        assert driver_class("lodown") is LoDownDriver


def test_a_registered_driver_works_through_the_controller(tmp_path: Path) -> None:
    register_driver("lodown", f"{PLUGIN}:LoDownDriver")
    with Controller(backend="fake", state_dir=tmp_path) as ctl:
        net = ctl.create_network("plug", driver="lodown")
        assert net.driver == "lodown"
        ns = ctl.create_namespace("app1")
        ns.connect("plug")
        assert not ns.snapshot().link("lo").up
        ns.disconnect("plug")
        assert ns.snapshot().link("lo").up  # the recorded plan was undone
        net.delete()


def test_overlay_says_clearly_that_it_is_not_available(tmp_path) -> None:
    from hostnet.controller import Controller

    ctl = Controller(backend="fake", state_dir=tmp_path / "s")
    before = ctl.store.dump()
    with pytest.raises(errors.UnsupportedError, match="multi-host store"):
        ctl.create_network("ov", driver="overlay")
    assert ctl.store.dump() == before
    ctl.close()
