"""Delegate configs for the reference plugins, on the test address ranges only.

Used by the tests, the demo and the benchmark."""

from __future__ import annotations

from typing import Any

V = "1.0.0"  # the newest version the packaged reference plugins speak


def host_local(data_dir: str, *subnets: str, routes: list[str] = ()) -> dict[str, Any]:
    return {
        "type": "host-local",
        "dataDir": data_dir,
        "ranges": [[{"subnet": s}] for s in subnets],
        "routes": [{"dst": d} for d in routes],
    }


def bridge_net(name: str, data_dir: str, bridge: str = "mn0",
               subnets: tuple[str, ...] = ("198.18.0.0/24", "fd00:18::/64"),
               version: str = V) -> dict[str, Any]:
    """The cluster network: a bridge with a gateway, dual-stack, default routes."""
    return {
        "cniVersion": version,
        "name": name,
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipam": host_local(data_dir, *subnets, routes=["0.0.0.0/0", "::/0"]),
    }


def macvlan_net(name: str, master: str, data_dir: str,
                subnets: tuple[str, ...] = ("198.18.1.0/24", "fd00:19::/64"),
                routes: list[str] = (), version: str = V) -> dict[str, Any]:
    ipam = host_local(data_dir, *subnets, routes=list(routes))
    return {"cniVersion": version, "name": name, "type": "macvlan", "master": master,
            "mode": "bridge", "ipam": ipam}


def host_device_net(name: str, device: str, data_dir: str,
                    subnets: tuple[str, ...] = ("198.18.2.0/24",),
                    version: str = V) -> dict[str, Any]:
    return {"cniVersion": version, "name": name, "type": "host-device", "device": device,
            "ipam": host_local(data_dir, *subnets)}


def multinet_conf(cni_dir: str, delegates: list[dict[str, Any]], bin_dir: str = "",
                  version: str = "1.1.0", **extra: Any) -> dict[str, Any]:
    conf = {"cniVersion": version, "name": "multinet-net", "type": "multinet",
            "cniDir": cni_dir, "delegates": delegates, "logLevel": "debug", **extra}
    if bin_dir:
        conf["binDir"] = bin_dir
    return conf
