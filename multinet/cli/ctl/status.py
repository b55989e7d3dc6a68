"""multinetctl status: is the node daemon up, are its caches synced, what has it done.

Asks the daemon's socket whether it accepts connections, its HTTP endpoints
(/healthz, /readyz, /metrics on metricsAddress:metricsPort of the daemon config) how
it is, and counts the records in cniDir. The metrics are read with prometheus_client's
own parser. Exit 0 when the daemon serves, is healthy and ready; 1 otherwise (down,
unhealthy, not ready); 2 when the daemon config cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from multinet.attach.record import QUARANTINE_DIR, RecordStore
from multinet.cli.ctl import options
from multinet.cni.errors import CNIError

HTTP_TIMEOUT = 5.0
VERBS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
NOT_SYNCED = "Kubernetes caches not synced"  # what the daemon's /readyz says (daemon/main.py)


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "status", help="daemon health, cache sync and the key metrics",
        description="Whether the node daemon accepts requests, is healthy and ready, its "
                    "caches synced; CNI requests and errors by verb, latency, teardown "
                    "give-ups and records. Exit 1 when the daemon is not serving or not ready.")
    cmd.add_argument("-o", "--output", choices=("table", "json"), default="table")
    options.add_common(cmd)
    cmd.set_defaults(func=run)


# -- asking --------------------------------------------------------------------------------

def probe_socket(path: str) -> str:
    """"" when something accepts connections at `path`, else why not."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(HTTP_TIMEOUT)
    try:
        sock.connect(path)
    except FileNotFoundError:
        return f"no socket at {path}"
    except OSError as exc:
        return f"nothing accepts connections at {path} ({exc.strerror or exc})"
    finally:
        sock.close()
    return ""


def http_get(url: str) -> dict[str, Any]:
    """{"status", "body"} of a GET, or {"error"} when nothing answered."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=HTTP_TIMEOUT) as reply:
            return {"status": reply.status, "body": reply.read().decode(errors="replace")}
    except urllib.error.HTTPError as err:
        return {"status": err.code, "body": err.read().decode(errors="replace")}
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return {"error": f"{url}: {getattr(reason, 'strerror', None) or reason}"}


# -- the metrics ---------------------------------------------------------------------------

def _bound(buckets: list[tuple[float, float]], count: float, q: float) -> float | None:
    """The upper bound of the bucket holding quantile q: the quantile is at most this."""
    for le, cumulative in sorted(buckets):
        if cumulative >= q * count:
            return le
    return None


def summarize(families: Iterable[Any]) -> dict[str, Any]:
    requests: dict[str, dict[str, Any]] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    out: dict[str, Any] = {"requests": requests, "teardownGivenUp": {}, "records": {},
                           "caches": None, "inflight": None}
    for family in families:
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "multinet_requests_total":
                verb = requests.setdefault(labels["verb"], {"total": 0, "errors": 0,
                                                            "byCode": {}})
                verb["total"] += int(value)
                verb["byCode"][labels["code"]] = int(value)
                if labels["code"] != "0":
                    verb["errors"] += int(value)
            elif name == "multinet_request_duration_seconds_bucket":
                buckets.setdefault(labels["verb"], []).append((float(labels["le"]), value))
            elif name in ("multinet_request_duration_seconds_sum",
                          "multinet_request_duration_seconds_count"):
                key = "seconds" if name.endswith("_sum") else "timed"
                requests.setdefault(labels["verb"], {"total": 0, "errors": 0,
                                                     "byCode": {}})[key] = value
            elif name == "multinet_teardown_given_up_total":
                key = "completed" if labels["completed"] == "true" else "notCompleted"
                out["teardownGivenUp"][key] = int(value)
            elif name == "multinet_inflight_operations":
                out["inflight"] = int(value)
            elif name in ("multinet_records_quarantined_total", "multinet_records_recovered_total"):
                key = name.removeprefix("multinet_records_").removesuffix("_total")
                out["records"][key] = int(value)
            elif name == "multinet_records_reaped_total":
                out["records"].setdefault("reaped", {})[labels["outcome"]] = int(value)
            elif name == "multinet_cache_objects":
                out["caches"] = out["caches"] or {}
                out["caches"][labels["kind"]] = int(value)
        if family.name == "multinet_cache_objects" and out["caches"] is None:
            out["caches"] = {}  # caches exist, holding nothing yet
    for verb, stats in requests.items():
        count = stats.pop("timed", 0)
        total_seconds = stats.pop("seconds", 0.0)
        if count:
            stats["meanSeconds"] = total_seconds / count
            stats["p50AtMostSeconds"] = _bound(buckets.get(verb, []), count, 0.5)
            stats["p99AtMostSeconds"] = _bound(buckets.get(verb, []), count, 0.99)
    return out


def _records(cni_dir: str) -> dict[str, Any]:
    if not os.path.isdir(cni_dir):
        return {"cniDir": cni_dir, "error": "does not exist"}
    try:
        count = sum(1 for _ in RecordStore(cni_dir).container_ids())
    except CNIError as err:
        return {"cniDir": cni_dir, "error": err.msg}
    quarantine = os.path.join(cni_dir, QUARANTINE_DIR)
    held = [n for n in os.listdir(quarantine) if not n.endswith(".prev")] \
        if os.path.isdir(quarantine) else []
    return {"cniDir": cni_dir, "count": count, "inQuarantine": len(held)}


def gather(node: options.Settings) -> dict[str, Any]:
    status: dict[str, Any] = {"socket": {"path": node.daemon.socket_path}}
    problem = probe_socket(node.daemon.socket_path)
    status["socket"]["accepting"] = not problem
    if problem:
        status["socket"]["error"] = problem
    base = node.metrics_url
    status["endpoints"] = base
    if base:
        for path in ("healthz", "readyz"):
            status[path] = http_get(f"{base}/{path}")
        scraped = http_get(f"{base}/metrics")
        if scraped.get("status") == 200:
            try:
                status["metrics"] = summarize(text_string_to_metric_families(scraped["body"]))
            except ValueError as exc:
                status["metrics"] = {"error": f"/metrics is not Prometheus text: {exc}"}
        else:
            status["metrics"] = {"error": scraped.get("error")
                                 or f"/metrics answered {scraped.get('status')}"}
    status["records"] = _records(node.cni_dir)
    status["caches"] = _caches(status)
    status["serving"] = _serving(status)
    return status


def _ok(answer: dict[str, Any] | None) -> bool:
    return answer is None or answer.get("status") == 200


def _serving(status: dict[str, Any]) -> bool:
    return (status["socket"]["accepting"] and _ok(status.get("healthz"))
            and _ok(status.get("readyz")))


def _caches(status: dict[str, Any]) -> dict[str, Any]:
    """Synced, not synced, or none (no Kubernetes access): from /readyz and the metrics."""
    objects = (status.get("metrics") or {}).get("caches")
    ready = status.get("readyz") or {}
    if ready.get("body", "").strip() == NOT_SYNCED:
        return {"state": "not synced", "objects": objects or {}}
    if objects is None:
        return {"state": "none" if "metrics" in status and "error" not in status["metrics"]
                else "unknown"}
    return {"state": "synced" if ready.get("status") == 200 else "unknown",
            "objects": objects}


# -- printing ------------------------------------------------------------------------------

def _probe_line(answer: dict[str, Any] | None) -> str:
    if answer is None:
        return "no HTTP endpoints (metricsPort 0)"
    if "error" in answer:
        return f"unreachable: {answer['error']}"
    body = answer["body"].strip()
    return body if answer["status"] == 200 else f"FAILING ({answer['status']}): {body}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else (f"{value:g}s" if value != float("inf") else "+Inf")


def render(status: dict[str, Any]) -> list[str]:
    sock = status["socket"]
    rows = [("daemon", f"accepting on {sock['path']}" if sock["accepting"]
             else f"DOWN: {sock['error']}")]
    rows.append(("health", _probe_line(status.get("healthz"))))
    rows.append(("ready", _probe_line(status.get("readyz"))))
    caches = status["caches"]
    objects = ", ".join(f"{k} {v}" for k, v in sorted((caches.get("objects") or {}).items()))
    rows.append(("caches", {"none": "none (no Kubernetes access configured)",
                            "unknown": "unknown"}.get(caches["state"], caches["state"])
                 + (f": {objects}" if objects else "")))
    metrics = status.get("metrics")
    if metrics is not None and "error" in metrics:
        rows.append(("metrics", f"unavailable: {metrics['error']}"))
    elif metrics is not None:
        requests = metrics["requests"]
        shown = [v for v in VERBS if v in requests] + sorted(set(requests) - set(VERBS))
        if not shown:
            rows.append(("requests", "none yet"))
        for index, verb in enumerate(shown):
            stats = requests[verb]
            text = f"{verb} {stats['total']} ({stats['errors']} failed)"
            if "meanSeconds" in stats:
                text += (f", mean {stats['meanSeconds']:.3f}s, p50 <= "
                         f"{_seconds(stats['p50AtMostSeconds'])}, p99 <= "
                         f"{_seconds(stats['p99AtMostSeconds'])}")
            rows.append(("requests" if index == 0 else "", text))
        rows.append(("in flight", str(metrics["inflight"] if metrics["inflight"] is not None
                                      else "-")))
        given = metrics["teardownGivenUp"]
        rows.append(("teardown", f"given up {sum(given.values())} (ADD completed "
                     f"{given.get('completed', 0)}, not completed "
                     f"{given.get('notCompleted', 0)})"))
    records = status["records"]
    if "error" in records:
        text = f"{records['cniDir']}: {records['error']}"
    else:
        text = f"{records['count']} in {records['cniDir']}, {records['inQuarantine']} in quarantine"
    counted = (metrics or {}).get("records") or {}
    if counted:
        reaped = sum((counted.get("reaped") or {}).values())
        text += (f"; since start: {counted.get('quarantined', 0)} quarantined, "
                 f"{counted.get('recovered', 0)} recovered, {reaped} reaped")
    rows.append(("records", text))
    width = max(len(label) for label, _ in rows)
    return [f"{label.ljust(width)}  {value}".rstrip() for label, value in rows]


def run(args: argparse.Namespace) -> int:
    try:
        node = options.settings(args)
    except options.OptionError as err:
        return options.fail("status", err)
    status = gather(node)
    if args.output == "json":
        print(json.dumps(status, indent=2))
    else:
        print("\n".join(render(status)))
    if not status["socket"]["accepting"]:
        return options.fail("status", "the daemon is down", 1)
    if not status["serving"]:
        return options.fail("status", "the daemon is not healthy and ready", 1)
    return 0
