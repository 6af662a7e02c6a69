"""The public API: ``hostnet.__all__`` is sorted and importable, and ``import hostnet`` is
cheap (no pyroute2) and works without root."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import hostnet


def test_all_is_sorted_and_unique() -> None:
    assert hostnet.__all__ == sorted(hostnet.__all__)
    assert len(set(hostnet.__all__)) == len(hostnet.__all__)


def test_the_names_the_design_promises_are_public() -> None:
    promised = {
        "Namespace",
        "Driver",
        "HostDriver",
        "BridgeDriver",
        "NoneDriver",
        "MacvlanDriver",
        "OverlayDriver",
        "PortAllocator",
        "Controller",
        "HostnetError",
    }
    assert promised <= set(hostnet.__all__)


@pytest.mark.parametrize("name", hostnet.__all__)
def test_every_public_name_is_importable(name: str) -> None:
    value = getattr(hostnet, name)
    assert value is not None
    assert name in dir(hostnet)
    if name.endswith("Driver") and name != "register_driver":
        assert issubclass(value, hostnet.Driver)


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        hostnet.no_such_thing  # noqa: B018


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HOSTNET_STATE_DIR"}
    env["HOME"] = "/nonexistent"
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd="/",
        check=False,
    )


SCENARIO = """
import sys
import hostnet
after_import = sorted(m for m in sys.modules if m.split(".")[0] == "pyroute2")
ctl = hostnet.Controller(backend=BACKEND)
ns = ctl.create_namespace("app1")
ctl.attach(ns, driver="none")
kind = ctl.backend.name
ns.delete()
ctl.close()
after_use = sorted(m for m in sys.modules if m.split(".")[0] == "pyroute2")
"""


def test_import_hostnet_does_not_load_pyroute2() -> None:
    code = SCENARIO.replace("BACKEND", "'fake'") + (
        "import json\nprint(json.dumps([after_import, after_use, kind, hostnet.__version__]))\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    after_import, after_use, kind, version = json.loads(proc.stdout)
    assert after_import == []
    assert after_use == []  # the fake backend never needs it either
    assert kind == "fake"
    assert version == hostnet.__version__


def test_import_hostnet_works_without_root() -> None:
    """As an unprivileged user, hostnet imports and "auto" picks the fake backend.

    The interpreter and its site-packages may live where only root can read (a pyenv
    under /root), so the child first loads every non-hostnet module the scenario needs,
    then drops to nobody, then imports and uses hostnet.
    """
    listing = _run(
        SCENARIO.replace("BACKEND", "'fake'")
        + "import json\n"
        + "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] != 'hostnet')))\n"
    )
    assert listing.returncode == 0, listing.stderr
    modules = json.loads(listing.stdout)
    preload = (
        "import importlib, os\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        pass\n"
        "if os.geteuid() == 0:\n"
        "    os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "assert os.geteuid() != 0\n"
    )
    code = (
        preload
        + SCENARIO.replace("BACKEND", "'auto'")
        + "import json, os\n"
        + "print(json.dumps([os.geteuid(), kind, after_import, after_use]))\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    euid, kind, after_import, after_use = json.loads(proc.stdout)
    assert euid != 0
    assert kind == "fake"
    assert after_import == after_use == []
