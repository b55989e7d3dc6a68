"""Prometheus metrics of one daemon, in a registry of its own."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.process_collector import ProcessCollector

from multinet.attach.record import REPORT_LOGGER
from multinet.daemon.delegatelog import LOGGER, delegate_call

# CNI calls range from a few milliseconds (VERSION, a DEL with nothing to do) to the
# delegate timeout.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0)


class _CacheSizes:
    """Objects held by the Kubernetes watch caches, read at scrape time."""

    def __init__(self, sizes: Callable[[], Mapping[str, int]]) -> None:
        self._sizes = sizes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("multinet_cache_objects",
                                   "Objects in the daemon's watch caches", labels=["kind"])
        try:
            sizes = self._sizes()
        except Exception:  # a scrape must not fail because a cache is restarting
            sizes = {}
        for kind, count in sorted(sizes.items()):
            family.add_metric([kind], count)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "multinet_requests", "CNI requests served, by verb and CNI result code (0: ok)",
            ["verb", "code"], registry=self.registry)
        self.request_seconds = Histogram(
            "multinet_request_duration_seconds", "Time to answer a CNI request, by verb",
            ["verb"], buckets=BUCKETS, registry=self.registry)
        self.delegate_seconds = Histogram(
            "multinet_delegate_duration_seconds",
            "Time one delegate plugin call took, by verb and plugin type",
            ["verb", "plugin"], buckets=BUCKETS, registry=self.registry)
        self.api_requests = Counter(
            "multinet_api_requests", "Kubernetes API requests made, by verb and resource",
            ["verb"], registry=self.registry)
        self.inflight = Gauge(
            "multinet_inflight_operations", "CNI requests being served now",
            registry=self.registry)
        self.teardown_given_up = Counter(
            "multinet_teardown_given_up",
            "Attachments whose DEL the policy gave up, by whether their ADD had completed",
            ["completed"], registry=self.registry)
        self.records_quarantined = Counter(
            "multinet_records_quarantined", "Unreadable records moved aside to .quarantine",
            registry=self.registry)
        self.records_recovered = Counter(
            "multinet_records_recovered",
            "Damaged records read back from their previous version", registry=self.registry)
        self.records_reaped = Counter(
            "multinet_records_reaped",
            "Records of forgotten sandboxes the reaper DELeted, by outcome",
            ["outcome"], registry=self.registry)
        self.reaper_passes = Counter(
            "multinet_reaper_passes", "Passes of the reaper over cniDir", registry=self.registry)
        self.temp_files_removed = Counter(
            "multinet_stale_temp_files_removed",
            "Temp files of interrupted record writes removed", registry=self.registry)
        self.hotplug_operations = Counter(
            "multinet_hotplug_operations",
            "Hot-plug reconciles of a running pod's networks, by result "
            "(ok, noop, refused, failed, skipped: no fully added sandbox, or the pod is being "
            "deleted; needs_restart: a change of its default network, never applied to a "
            "running pod)", ["result"], registry=self.registry)
        self.autoconf_writes = Counter(
            "multinet_autoconf_writes",
            "Writes of the generated CNI config, by reason (generated, primary changed, "
            "restored)", ["reason"], registry=self.registry)
        self.autoconf_restored = Counter(
            "multinet_autoconf_restored",
            "Times the generated CNI config was put back after another component renamed, "
            "removed or rewrote it", registry=self.registry)
        self.autoconf_removed = Counter(
            "multinet_autoconf_removed",
            "Times the generated CNI config was removed (no primary, not ready, exit)",
            registry=self.registry)
        self.autoconf_primary_errors = Counter(
            "multinet_autoconf_primary_errors",
            "Times the primary CNI config was found unusable (the last good generated "
            "config was kept)", registry=self.registry)
        self.requests_refused = Counter(
            "multinet_requests_refused",
            "Requests the socket refused unread with code 11, by reason (buffer_full: "
            "their declared size would take the bytes buffered past maxBufferedBytes)",
            ["reason"], registry=self.registry)
        self.socket_buffered = Gauge(
            "multinet_socket_buffered_bytes",
            "Bytes of requests and answers the socket holds now (bounded by "
            "maxBufferedBytes)", registry=self.registry)
        ProcessCollector(registry=self.registry)
        self._timings: DelegateTimings | None = None
        self._teardown: TeardownCounts | None = None

    def request_done(self, verb: str, code: int, seconds: float) -> None:
        self.requests.labels(verb, str(code)).inc()
        self.request_seconds.labels(verb).observe(seconds)

    def request_refused(self, reason: str) -> None:
        self.requests_refused.labels(reason).inc()

    def api_request(self, what: str) -> None:
        """Matches KubeClient's on_request: `what` is e.g. "GET pod"."""
        self.api_requests.labels(what).inc()

    def watch_caches(self, sizes: Callable[[], Mapping[str, int]]) -> None:
        self.registry.register(_CacheSizes(sizes))

    def read_delegate_lines(self, on: bool = True) -> None:
        """Start (or stop) observing delegate timings from the engine's log lines."""
        logger = logging.getLogger(LOGGER)
        if on and self._timings is None:
            self._timings = DelegateTimings(self)
            logger.addHandler(self._timings)
        elif not on and self._timings is not None:
            logger.removeHandler(self._timings)
            self._timings = None

    def read_teardown_reports(self, on: bool = True) -> None:
        """Start (or stop) counting the engine's teardown reports (give-ups, quarantines)."""
        logger = logging.getLogger(REPORT_LOGGER)
        if on and self._teardown is None:
            self._teardown = TeardownCounts(self)
            logger.addHandler(self._teardown)
        elif not on and self._teardown is not None:
            logger.removeHandler(self._teardown)
            self._teardown = None

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class DelegateTimings(logging.Handler):
    """Observes the delegate histogram from the engine's per-delegate log line."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(logging.INFO)
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        call = delegate_call(record)
        if call is not None:
            self.metrics.delegate_seconds.labels(call.command, call.plugin).observe(call.seconds)


class TeardownCounts(logging.Handler):
    """Counts the facts the engine's teardown log lines carry."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(logging.WARNING)
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        m = self.metrics
        given_up = getattr(record, "del_given_up", None)
        if isinstance(given_up, dict):
            m.teardown_given_up.labels(str(bool(given_up.get("completed"))).lower()).inc()
        if getattr(record, "record_quarantined", None) is not None:
            m.records_quarantined.inc()
        if getattr(record, "record_recovered", None) is not None:
            m.records_recovered.inc()
        reaped = getattr(record, "record_reaped", None)
        if isinstance(reaped, dict):
            m.records_reaped.labels(str(reaped.get("outcome", ""))).inc()
        removed = getattr(record, "temp_removed", None)
        if isinstance(removed, dict):
            m.temp_files_removed.inc(int(removed.get("count", 0)))
