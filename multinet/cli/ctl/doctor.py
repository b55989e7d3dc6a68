"""multinetctl doctor: desired, recorded and actual side by side; each drift named.

The comparison is survey.py's, the repairs repair.py's; this module is the command
line and the text.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from multinet.cli.ctl import leases, podsource, repair, sandbox
from multinet.cli.ctl.survey import Survey, Where, survey

HELP = f"""\
For one pod (POD) or every pod with a record in cniDir, show side by side what
the pod's annotations ask for (planned as ADD plans them: see explain), what the
records say was attached, and what is there: the interfaces, addresses and
default routes in the pod's network namespace, and host-local's leases. Every
difference is one line, "drift: KIND: ...":

  missing-interface       an interface of the record is not in the netns
  extra-interface         an interface in the netns belongs to no attachment
  extra-default-route     more than one default route of a family in the netns
  netns-gone              the record's netns is gone: no sandbox owns its attachments
  orphan-lease            a host-local lease of a container with no record and no sandbox
  unrecorded-lease        a lease with no record whose container may still run (left alone)
  missing-attachment      the annotations ask for a network the record does not hold
  unrequested-attachment  the record holds a network the annotations no longer ask for
  unreadable-record       a record that cannot be read (the next DEL or GC sets it aside)
  no-record               the named pod has no record on this node

Without --fix nothing is changed. With --fix, what no sandbox owns is released:
a netns-gone record gets the engine's DEL from the record, under the container's
lock, so every delegate's IPAM gives its addresses back; an orphan lease file is
removed, under host-local's lock. Run it where the runtime runs CNI plugins (the
node's host network namespace): the DEL's delegates run there.

The risk of --fix on a lease: a lease names only a container id. "No sandbox" is
decided from this node alone: no multinet record, no runtime state under
{", ".join(sandbox.RUNTIME_DIRS)}
(or the --runtime-dir given), no Multus cache entry, and no process in a cgroup
named after the id. A sandbox run by a runtime keeping its state elsewhere, or
attached by a CNI plugin that bypasses multinet, is not seen; removing its lease
lets host-local give the same address to another pod. Use --runtime-dir for such
runtimes, and --lease-dir to limit which dataDirs are looked at.

Exit 0 when there is no drift (after --fix: none left), 1 when there is, 2 when
the config cannot be read."""


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser("doctor", help="compare desired, recorded and actual; "
                                "name each drift; --fix releases what no sandbox owns",
                                description=HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    podsource.add_pod_argument(cmd, required=False)
    cmd.add_argument("--fix", action="store_true",
                     help="release what no sandbox owns (see above); changes nothing else")
    cmd.add_argument("--lease-dir", action="append", metavar="DIR",
                     help="a host-local dataDir to look for leases in, besides those the "
                     f"records name (repeatable; default {leases.DEFAULT_DATA_DIR})")
    cmd.add_argument("--runtime-dir", action="append", metavar="DIR", default=[],
                     help="another directory where a runtime keeps a DIR/<id> or "
                     "DIR/*/<id> entry per container it knows (repeatable)")
    cmd.add_argument("--multus-cache-dir", metavar="DIR",
                     help="Multus' cache of the pods it attached (default: the config's "
                     "multusCacheDir); its pods' leases are left alone")
    podsource.add_output_argument(cmd)
    podsource.add_config_arguments(cmd)
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        pod = podsource.pod_key(args)
        loaded = podsource.load(args)
        kube = podsource.kube_for(loaded.conf)
    except podsource.CtlError as err:
        print(f"multinetctl doctor: {err}", file=sys.stderr)
        return 2
    where = Where(
        lease_data_dirs=tuple(args.lease_dir) if args.lease_dir else (leases.DEFAULT_DATA_DIR,),
        runtime_dirs=sandbox.RUNTIME_DIRS + tuple(args.runtime_dir),
        multus_cache_dir=args.multus_cache_dir or loaded.conf.multus_cache_dir)
    try:
        before = survey(loaded.conf, kube, pod, where)
        outcomes = repair.fix(loaded.conf, before.drifts, where) if args.fix else []
        after = survey(loaded.conf, kube, pod, where) if args.fix else before
    finally:
        if kube is not None:
            kube.close()
    if args.output == "json":
        out: dict[str, Any] = before.to_dict()
        if args.fix:
            out["fixes"] = [o.to_dict() for o in outcomes]
            out["after"] = after.to_dict()
        print(json.dumps(out, indent=2))
    else:
        lines = render(before)
        if args.fix:
            lines += [f"{'fixed' if o.fixed else 'NOT fixed'}: {o.message}" for o in outcomes]
            lines.append("after --fix:")
            lines += _drift_lines(after)
        print("\n".join(lines))
    return 1 if after.drifts else 0


# -- text --------------------------------------------------------------------------------


def _mark(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _actual(row: Mapping[str, Any], netns_present: bool) -> str:
    actual = row["actual"]
    if actual is None:
        return "missing" if netns_present else "(netns gone)"
    return " ".join(actual["addresses"]) or f"up ({actual['mac']})"


def _pod_lines(pod: Mapping[str, Any]) -> list[str]:
    netns = pod["netns"] + ("" if pod["netnsPresent"] else " (gone)")
    lines = [f"pod {pod['pod'] or '-'}  container {pod['container']}  state {pod['state']}  "
             f"netns {netns}"]
    rows = pod["networks"]
    if rows:
        width = max(len("NETWORK"), *(len(r["network"]) for r in rows))
        ifw = max(len("IFNAME"), *(len(r["ifname"]) for r in rows))
        lines.append(f"  {'IFNAME':<{ifw}}  {'NETWORK':<{width}}  DESIRED  RECORDED  ACTUAL")
        for r in rows:
            lines.append(f"  {r['ifname']:<{ifw}}  {r['network']:<{width}}  "
                         f"{_mark(r['desired']):<7}  {_mark(r['recorded']):<8}  "
                         f"{_actual(r, pod['netnsPresent'])}")
    routes = pod["defaultRoutes"]
    if pod["netnsPresent"]:
        shown = "; ".join(
            f"IPv{r['family']} dev {r['ifname'] or '-'}"
            + (f" via {r['gateway']}" if r["gateway"] else "") for r in routes) or "none"
        lines.append(f"  default routes: {shown}")
    if pod["leases"]:
        lines.append("  leases: " + ", ".join(
            f"{lease['address']} ({lease['network']}, {lease['ifname'] or '?'})"
            for lease in pod["leases"]))
    lines += [f"  note: {n}" for n in pod["notes"]]
    return lines


def _drift_lines(found: Survey) -> list[str]:
    lines = [f"drift: {d.kind}: {d.message}" for d in found.drifts]
    fixable = sum(d.fixable for d in found.drifts)
    if not found.drifts:
        lines.append("no drift")
    else:
        lines.append(f"{len(found.drifts)} drift(s), {fixable} that --fix releases")
    return lines


def render(found: Survey) -> list[str]:
    data = found.to_dict()
    lines = [f"cniDir {found.cni_dir}: {len(found.pods)} record(s) shown, "
             f"{len(found.leases)} host-local lease(s) seen"]
    for pod in data["pods"]:
        lines += _pod_lines(pod)
    lines += [f"note: {n}" for n in found.notes]
    return lines + _drift_lines(found)
