"""Other programs making the same bridge endpoint: `ip`/`nft`, CNI plugins, netavark.

Every one of them configures the host side (bridge, veth, firewall) in the network
namespace it runs in, so every command here is started through ``HostExec``: `nsenter
--net=/run/netns/HOST -- argv`, the cheapest way to start a program in a namespace from
a large Python process (a vfork+exec of nsenter, which setns()es and execs the program;
``ip netns exec`` also remounts /sys, and a ``preexec_fn`` forks the whole interpreter).
``HostExec.verify`` checks, before anything else runs, that a child really lands in the
throwaway host namespace, and ``root_state`` lets the caller prove the machine's own
firewall and links were not touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from baselines.kernel import ns_path

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CNI_DIRS = ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni")
NETAVARK_PATHS = ("/usr/lib/podman/netavark", "/usr/libexec/podman/netavark")
DEBIAN_PACKAGES = ("containernetworking-plugins", "netavark", "iptables")


class ToolError(RuntimeError):
    pass


class HostExec:
    """Runs programs inside the namespace ``host`` (see the module docstring)."""

    def __init__(self, host: str) -> None:
        nsenter = shutil.which("nsenter")
        if nsenter is None:
            raise ToolError("nsenter (util-linux) is not installed")
        self.host = host
        self.prefix = [nsenter, f"--net={ns_path(host)}", "--"]

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> bytes:
        done = subprocess.run(
            [*self.prefix, *argv],
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            env=dict(env) if env is not None else {"PATH": SAFE_PATH},
            check=False,
        )
        if done.returncode != 0:
            message = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise ToolError(f"{' '.join(argv)} (rc {done.returncode}): {message[-800:]}")
        return done.stdout

    def verify(self) -> None:
        """Refuse to go on unless a child started this way is in the host namespace."""
        inode = os.stat(ns_path(self.host)).st_ino
        seen = self.run(["readlink", "/proc/self/ns/net"]).decode().strip()
        if seen != f"net:[{inode}]":
            raise ToolError(f"a child started in {self.host} is in {seen}, not net:[{inode}]")


def run_root(argv: Sequence[str]) -> str:
    """A read-only command in our own (the machine's) namespace; '' if it is missing."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return ""
    return done.stdout


def _without_timestamps(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


def root_state() -> dict[str, Any]:
    """What the benchmark must never change in the machine's own namespace: the nftables
    ruleset, the iptables rules (both families) and the list of links."""
    links = []
    for line in run_root(["ip", "-o", "link", "show"]).splitlines():
        parts = line.split(":", 2)
        if len(parts) > 1:
            links.append(parts[1].strip().split("@")[0])
    return {
        "nft_ruleset": run_root(["nft", "list", "ruleset"]),
        "iptables": _without_timestamps(run_root(["iptables-save"])),
        "ip6tables": _without_timestamps(run_root(["ip6tables-save"])),
        "links": sorted(links),
    }


def compare_root(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Which parts of ``root_state`` changed (and, for links, which ones)."""
    out: dict[str, Any] = {
        key: before[key] != after[key] for key in ("nft_ruleset", "iptables", "ip6tables")
    }
    out["links_added"] = sorted(set(after["links"]) - set(before["links"]))
    out["links_removed"] = sorted(set(before["links"]) - set(after["links"]))
    out["unchanged"] = not any(out[k] for k in ("nft_ruleset", "iptables", "ip6tables")) and not (
        out["links_added"] or out["links_removed"]
    )
    return out


# -- finding (and installing) the tools -------------------------------------------------


def cni_dir() -> str | None:
    for directory in CNI_DIRS:
        if all(os.access(os.path.join(directory, p), os.X_OK) for p in CNI_PLUGINS):
            return directory
    return None


CNI_PLUGINS = ("bridge", "host-local", "portmap")


def netavark_path() -> str | None:
    for path in NETAVARK_PATHS:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("netavark")


def install_debian_packages() -> str | None:
    """apt-get install the CNI plugins, netavark and iptables when one is missing.
    Returns None on success, else why it failed (the caller skips those methods)."""
    if cni_dir() and netavark_path() and shutil.which("iptables"):
        return None
    if shutil.which("apt-get") is None:
        return "not a Debian-like system (no apt-get)"
    print(f"installing {' '.join(DEBIAN_PACKAGES)} with apt-get (not timed)...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", *DEBIAN_PACKAGES],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return f"`{' '.join(argv)}` failed: {' / '.join(tail)}"
    return None


def package_version(name: str) -> str | None:
    out = run_root(["dpkg-query", "-W", "-f", "${Version}", name]).strip()
    return out or None


def tool_version(argv: Sequence[str]) -> str | None:
    out = run_root(argv).strip()
    return out.splitlines()[0] if out else None


# -- CNI and netavark request documents -------------------------------------------------


def cni_bridge_config(*, bridge: str, subnet: str, data_dir: str) -> dict[str, Any]:
    """The bridge plugin with host-local IPAM, as podman's default CNI network set it
    up: gateway on the bridge, masquerade, hairpin, a default route."""
    return {
        "cniVersion": "1.0.0",
        "name": "bench",
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": True,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": subnet}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": data_dir,
        },
    }


def cni_portmap_config(
    host_port: int, container_port: int, prev_result: Any | None = None
) -> dict[str, Any]:
    """The portmap plugin chained after bridge (its runtimeConfig is what a runtime
    passes for ``-p host_port:container_port``)."""
    config: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "bench",
        "type": "portmap",
        "capabilities": {"portMappings": True},
        "snat": True,
        "runtimeConfig": {
            "portMappings": [
                {"hostPort": host_port, "containerPort": container_port, "protocol": "tcp"}
            ]
        },
    }
    if prev_result is not None:
        config["prevResult"] = prev_result
    return config


def cni_env(command: str, *, container_id: str, netns: str, cni_path: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": cni_path,
        "PATH": SAFE_PATH,
    }


def netavark_options(
    *,
    container_id: str,
    name: str,
    ip: str,
    host_port: int,
    container_port: int,
    bridge: str,
    subnet: str,
    gateway: str,
    network_id: str,
) -> dict[str, Any]:
    """netavark's network options (what podman sends on stdin for ``podman run -p``):
    one bridge network, a static address (podman does IPAM, not netavark), one port."""
    return {
        "container_id": container_id,
        "container_name": name,
        "port_mappings": [
            {
                "host_ip": "",
                "container_port": container_port,
                "host_port": host_port,
                "range": 1,
                "protocol": "tcp",
            }
        ],
        "networks": {"bench": {"static_ips": [ip], "interface_name": "eth0"}},
        "network_info": {
            "bench": {
                "name": "bench",
                "id": network_id,
                "driver": "bridge",
                "network_interface": bridge,
                "subnets": [{"subnet": subnet, "gateway": gateway}],
                "ipv6_enabled": False,
                "internal": False,
                "dns_enabled": False,
                "ipam_options": {"driver": "host-local"},
            }
        },
    }
