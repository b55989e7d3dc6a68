"""multinetctl show [POD|CONTAINERID]: what multinet did for a pod, from its records.

A target with a `/` is a pod `namespace/name`; otherwise a pod name (in the namespace
of -n, else in any) or a container id (whole, or its start when only one record has
it). No target: every record. The table shows each attachment's network, interface,
state, plugins, MAC and addresses, then routes, devices and DEL failures; `-o json`
prints the same as JSON. Exit 1 when nothing matches or a matching record is damaged
beyond reading, 2 when cniDir cannot be used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from multinet.cli.ctl import options
from multinet.cli.ctl.records import Found, read_all, select, view
from multinet.cni.errors import CNIError


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "show", help="what multinet did for a pod, from its records",
        description="Networks, interfaces, addresses, routes, devices and state per "
                    "attachment of a pod or container, read from the records in cniDir.")
    cmd.add_argument("target", nargs="?", metavar="POD|CONTAINERID",
                     help="namespace/name, a pod name, or a container id (or its start)")
    cmd.add_argument("-n", "--namespace", help="the pod's namespace")
    cmd.add_argument("-o", "--output", choices=("table", "json"), default="table")
    options.add_common(cmd)
    cmd.set_defaults(func=run)


def _damage_note(found: Found) -> str:
    if found.record is not None:
        return (f"record {found.container_id} is damaged ({found.damaged}); showing its "
                f"previous version {found.previous}")
    prev = (f"a previous version {found.previous} exists but cannot be read either"
            if found.previous else "no previous version exists")
    return f"record {found.container_id} is damaged ({found.damaged}); {prev}"


def run(args: argparse.Namespace) -> int:
    try:
        node = options.settings(args)
    except options.OptionError as err:
        return options.fail("show", err)
    if not os.path.isdir(node.cni_dir):
        return options.fail("show", f"no records: cniDir {node.cni_dir} does not exist", 1)
    try:
        records = read_all(node.cni_dir)
    except CNIError as err:
        return options.fail("show", err.msg)
    target = args.target
    chosen = records if target is None else select(records, target, args.namespace)
    unreadable = [f for f in records if f.record is None and f not in chosen]
    if not chosen:
        what = _described(target, args.namespace)
        for found in unreadable:  # it may be the one asked for
            print(f"multinetctl show: {_damage_note(found)}: it may be {what}", file=sys.stderr)
        if target is None:
            return options.fail("show", f"no records in {node.cni_dir}", 1)
        return options.fail("show", f"no record of {what} in {node.cni_dir}", 1)
    lost = 1 if any(f.record is None for f in chosen) else 0
    if args.output == "table":
        print("\n\n".join(render(f) for f in chosen))  # damage shows as WARNING lines
        return lost
    print(json.dumps({"cniDir": node.cni_dir, "records": [view(f) for f in chosen]}, indent=2))
    for found in chosen:
        if found.damaged:
            print(f"multinetctl show: {_damage_note(found)}", file=sys.stderr)
    return lost


def _described(target: str | None, namespace: str | None) -> str:
    if target is None:
        return "any pod"
    if "/" in target:
        return f"pod {target}"
    if namespace is not None:
        return f"pod {namespace}/{target}"
    return f"pod or container {target}"


# -- the table -----------------------------------------------------------------------------

def _table(rows: list[list[str]], indent: str = "") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            .rstrip() for row in rows]


def _addresses(attachment: dict[str, Any]) -> str:
    out = []
    for ip in attachment["addresses"]:
        text = ip["address"]
        if ip.get("interface") and ip["interface"] != attachment["ifname"]:
            text += f" on {ip['interface']}"
        if ip.get("gateway"):
            text += f" gw {ip['gateway']}"
        out.append(text)
    return ", ".join(out) or "-"


def _mac(attachment: dict[str, Any]) -> str:
    for iface in attachment["interfaces"]:
        if iface.get("name") == attachment["ifname"] and iface.get("mac"):
            return iface["mac"]
    return "-"


def _state(attachment: dict[str, Any]) -> str:
    state = "completed" if attachment["completed"] else "not completed"
    if attachment.get("delFailures"):
        state += f", {attachment['delFailures']} DEL failure(s)"
    return state


def render(found: Found) -> str:
    v = view(found)
    lines = []
    if found.damaged:
        lines.append(f"WARNING: {_damage_note(found)}")
    if found.record is None:
        return "\n".join([*lines, f"container {found.container_id}: record unreadable"])
    pod = v["pod"]
    who = f"pod {pod.get('namespace', '')}/{pod['name']}" if pod.get("name") else "no pod"
    if pod.get("uid"):
        who += f" (uid {pod['uid']})"
    lines.append(f"container {v['containerId']}  {who}")
    state = v["state"] + (", recovered from a previous version" if v["recovered"] else "")
    lines.append(f"netns {v['netns'] or '-'}  state {state}")
    attachments = v["attachments"]
    rows = [["NETWORK", "IFNAME", "STATE", "PLUGINS", "MAC", "ADDRESSES"]]
    for a in attachments:
        name = a["network"] + (" (primary)" if a["isDefault"] else "")
        rows.append([name, a["ifname"], _state(a), ",".join(a["plugins"]), _mac(a),
                     _addresses(a)])
    lines += _table(rows)
    routes = [[a["ifname"], r["dst"], f"via {r['gw']}" if r.get("gw") else ""]
              for a in attachments for r in a["routes"]]
    routes += [[a["ifname"], r["dst"], (f"via {r['gw']} " if r.get("gw") else "")
                + "(removed: the default route is another network's)"]
               for a in attachments for r in a.get("defaultRoutesRemoved", [])]
    if routes:
        lines.append("routes:")
        lines += _table(routes, "  ")
    devices = [[a["network"], a["ifname"], f"deviceID {a['deviceID']}" if a.get("deviceID")
                else "", f"resource {a['resourceName']}" if a.get("resourceName") else "",
                f"device-info {a['deviceInfoFile']}" if a.get("deviceInfoFile") else ""]
               for a in attachments
               if a.get("deviceID") or a.get("resourceName") or a.get("deviceInfoFile")]
    if devices:
        lines.append("devices:")
        lines += _table(devices, "  ")
    failures = [a for a in attachments if a.get("delFailures")]
    if failures:
        lines.append("DEL failures:")
        for a in failures:
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a["firstDelFailure"]))
            lines.append(f"  {a['network']} ({a['ifname']}): {a['delFailures']} since {since}; "
                         f"last: {a['lastDelError']}")
    return "\n".join(lines)
