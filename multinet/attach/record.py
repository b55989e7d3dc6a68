"""The per-container record DEL works from: what was planned, what was added.

One JSON file per container under cniDir (0700, ours alone), always replaced
atomically (temp file, fsync, rename), so a reader sees either the old record or
the new one. Before a good record is replaced, it is kept as `.prev/<id>` (a hard
link: no copy, no extra fsync), so a record damaged on disk still leaves DEL the
last good version to work from. One that cannot be read at all is moved aside to
`.quarantine/`, never taken as "nothing to do" and never deleted.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from multinet.attach import policyroute
from multinet.attach.lock import LOCK_DIR, prepare_cni_dir
from multinet.attach.plan import Attachment
from multinet.cni.errors import DECODE_FAILURE, INVALID_CONFIG, IO_FAILURE, CNIError
from multinet.cni.request import CONTAINER_ID_RE
from multinet.fileio import (
    atomic_write,
    ensure_private_dir,
    fsync_dir,
    remove_stale_temp_files,
)

KIND = "multinetRecordV1"
ADDING = "adding"  # written before the first delegate runs
ADDED = "added"
PREV_DIR = ".prev"
QUARANTINE_DIR = ".quarantine"
# Whatever reports on teardown (metrics, events) listens to this logger's facts.
REPORT_LOGGER = "multinet.teardown"
_MAX_RECORD = 16 << 20  # far above any real record; a bigger file is not ours

report_log = logging.getLogger(REPORT_LOGGER)
# Giving up is always loud: these facts reach their listeners (and the log) even
# when the configured log level is quieter (logLevel "panic").
report_log.setLevel(logging.WARNING)


@dataclass
class AttachmentState:
    attachment: Attachment
    result: dict[str, Any] | None = None  # the delegate's result, in its own version
    started: bool = False  # its delegates ran in this process (not stored)
    del_failures: int = 0  # DELs of it that failed, rollback included
    first_del_failure: float = 0.0  # unix time of the first, 0 for none
    last_del_error: str = ""
    # Policy routing made for it in the pod (attach/policyroute.py): recorded before
    # it is made, removed exactly on DEL. None: none asked, or none left.
    policy_routing: dict[str, Any] | None = None

    @property
    def completed(self) -> bool:
        """Its delegates answered ADD with a result: it may hold addresses."""
        return self.result is not None

    def note_del_failure(self, message: str, now: float | None = None) -> None:
        self.del_failures += 1
        if not self.first_del_failure:
            self.first_del_failure = time.time() if now is None else now
        self.last_del_error = message[:2000]


@dataclass
class Record:
    container_id: str
    netns: str
    ifname: str
    cni_args: str
    state: str = ADDING
    attachments: list[AttachmentState] = field(default_factory=list)
    pod: dict[str, str] = field(default_factory=dict)
    plugin_dirs: list[str] = field(default_factory=list)  # where ADD found its plugins
    # Read back from a previous version at some point: what completed ADD is not
    # known any more, so every attachment counts as completed (kept when rewritten).
    recovered: bool = False
    # The multinet config ADD planned with (prevResult left out): what a hot-plug of
    # this sandbox plans with (attach/hotplug.py). Empty in records written before it.
    conf: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "containerId": self.container_id,
            "netns": self.netns,
            "ifname": self.ifname,
            "cniArgs": self.cni_args,
            "state": self.state,
            "pod": self.pod,
            "pluginDirs": list(self.plugin_dirs),
            "recovered": self.recovered,
            "conf": self.conf,
            "attachments": [
                {**a.attachment.to_record(), "result": a.result,
                 "delFailures": a.del_failures, "firstDelFailure": a.first_del_failure,
                 "lastDelError": a.last_del_error,
                 # Written only when set: a record without it reads as before.
                 **({"policyRouting": a.policy_routing} if a.policy_routing else {})}
                for a in self.attachments
            ],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Record:
        """Raises ValueError for anything but a record of this kind and shape."""
        if not isinstance(data, dict) or data.get("kind") != KIND:
            kind = data.get("kind") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"not a {KIND} record (kind {kind!r})")
        strings = {k: _typed(data, k, str, "") for k in ("netns", "ifname", "cniArgs")}
        container_id = _typed(data, "containerId", str, None)
        state = _typed(data, "state", str, ADDING)
        if state not in (ADDING, ADDED):
            raise ValueError(f"unknown record state {state!r}")
        pod = _typed(data, "pod", dict, {})
        dirs = _typed(data, "pluginDirs", list, [])
        if not all(isinstance(v, str) for v in [*pod.values(), *dirs]):
            raise ValueError("pod and pluginDirs must hold strings")
        return cls(
            container_id=container_id,
            netns=strings["netns"],
            ifname=strings["ifname"],
            cni_args=strings["cniArgs"],
            state=state,
            pod=pod,
            plugin_dirs=dirs,
            recovered=data.get("recovered", False) is True,
            conf=_typed(data, "conf", dict, {}),
            attachments=[_attachment_state(a) for a in _typed(data, "attachments", list, [])],
        )


def _typed(data: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = data.get(key, default)
    if value is None or not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ValueError(f"{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _attachment_state(data: Any) -> AttachmentState:
    if not isinstance(data, dict):
        raise ValueError(f"attachment: expected an object, got {type(data).__name__}")
    for key in ("name", "ifname"):
        _typed(data, key, str, None)
    for key in ("capabilityArgs", "extra", "network"):
        _typed(data, key, dict, {})
    result = data.get("result")
    if result is not None and not isinstance(result, dict):
        raise ValueError("attachment result: expected an object")
    failures = data.get("delFailures", 0)
    first = data.get("firstDelFailure", 0.0)
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        raise ValueError("delFailures: expected a count")
    if isinstance(first, bool) or not isinstance(first, int | float):
        raise ValueError("firstDelFailure: expected a time")
    routing = data.get("policyRouting")
    if routing is not None:
        policyroute.check_recorded(routing)
    try:
        attachment = Attachment.from_record(data)
    except CNIError as err:
        raise ValueError(err.msg) from None
    return AttachmentState(attachment, result, del_failures=failures,
                           first_del_failure=float(first),
                           last_del_error=str(data.get("lastDelError", "")),
                           policy_routing=routing)


def _refuse_constant(name: str) -> Any:
    # Records are written without NaN or Infinity: one holding them is damaged.
    raise ValueError(f"{name} is not a number a record can hold")


class UnreadableRecord(CNIError):
    """A record file exists but neither it nor its previous version can be used."""

    def __init__(self, container_id: str, path: str, reason: str) -> None:
        super().__init__(DECODE_FAILURE, f"record {path} is unreadable: {reason}")
        self.container_id = container_id
        self.reason = reason


class RecordStore:
    """Records of one cniDir. Callers hold the container's lock (GC: the GC lock)."""

    def __init__(self, cni_dir: str) -> None:
        self.cni_dir = cni_dir
        prepare_cni_dir(cni_dir)
        # Records read back whole or written by this store: safe to keep as .prev.
        self._good: set[str] = set()

    def path(self, container_id: str) -> str:
        if not CONTAINER_ID_RE.match(container_id):
            raise CNIError(IO_FAILURE, f"refusing record path for container id {container_id!r}")
        return os.path.join(self.cni_dir, container_id)

    def prev_path(self, container_id: str) -> str:
        return os.path.join(self.cni_dir, PREV_DIR, os.path.basename(self.path(container_id)))

    def read(self, container_id: str) -> Record | None:
        """The record, or None when there is none. Raises UnreadableRecord when the
        file exists but neither it nor its previous version is a record; a previous
        version used instead is logged and marked `recovered`."""
        path = self.path(container_id)
        try:
            record = _load(path)
            if record.container_id != container_id:
                raise ValueError(f"it is the record of {record.container_id!r}")
        except FileNotFoundError:
            return None
        except _NotARecordFile as exc:
            # A directory (a host-local dataDir inside cniDir) or a device: not ours.
            report_log.warning("%s is %s, not a record: ignored", path, exc)
            return None
        except ValueError as exc:
            return self._previous(container_id, path, str(exc))
        self._good.add(container_id)
        return record

    def _previous(self, container_id: str, path: str, reason: str) -> Record:
        prev = self.prev_path(container_id)
        try:
            record = _load(prev)
        except (OSError, ValueError, _NotARecordFile):
            raise UnreadableRecord(container_id, path, reason) from None
        if record.container_id != container_id:
            raise UnreadableRecord(container_id, path, reason)
        record.recovered = True
        report_log.error("record %s is unreadable (%s); using its previous version %s",
                         path, reason, prev,
                         extra={"record_recovered": {"container": container_id,
                                                     "reason": reason}})
        return record

    def write(self, record: Record) -> None:
        # Compact: the C encoder; indenting would take the slow Python one on a hot path.
        try:
            data = json.dumps(record.to_dict(), separators=(",", ":"), allow_nan=False)
        except ValueError:
            raise CNIError(INVALID_CONFIG, f"container {record.container_id}: the plan holds "
                           "a number JSON cannot carry (NaN or Infinity)") from None
        path = self.path(record.container_id)
        try:
            if record.container_id in self._good:
                self._keep_previous(record.container_id, path)
            atomic_write(path, data.encode())
        except OSError as exc:  # a full disk: the old version (if any) is still whole
            raise CNIError(IO_FAILURE, f"cannot write record {path}: "
                           f"{exc.strerror or exc}") from None
        self._good.add(record.container_id)

    def _keep_previous(self, container_id: str, path: str) -> None:
        prev = self.prev_path(container_id)
        ensure_private_dir(os.path.dirname(prev))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(prev)
        with contextlib.suppress(FileNotFoundError):
            os.link(path, prev, follow_symlinks=False)

    def remove(self, container_id: str) -> None:
        self._good.discard(container_id)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.prev_path(container_id))
        try:
            os.unlink(self.path(container_id))
        except FileNotFoundError:
            return
        fsync_dir(self.cni_dir)

    def quarantine(self, container_id: str, reason: str) -> str:
        """Move an unreadable record (and its previous version) aside, loudly; returns
        where it went. Kept for a person to see, never read again."""
        directory = os.path.join(self.cni_dir, QUARANTINE_DIR)
        ensure_private_dir(directory)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = os.path.join(directory, f"{container_id}.{stamp}.{os.getpid()}")
        os.replace(self.path(container_id), target)
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.prev_path(container_id), f"{target}.prev")
        fsync_dir(self.cni_dir)
        self._good.discard(container_id)
        report_log.error("record of container %s is unreadable (%s); moved to %s: what it "
                         "described may still be on the node", container_id, reason, target,
                         extra={"record_quarantined": {"container": container_id,
                                                       "reason": reason, "path": target}})
        return target

    def container_ids(self) -> Iterator[str]:
        """Names that may be records: regular files or symlinks named like a container
        id. Directories (a host-local dataDir inside cniDir) are never records."""
        try:
            entries = sorted(os.scandir(self.cni_dir), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name == LOCK_DIR or not CONTAINER_ID_RE.match(entry.name):
                continue
            if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                yield entry.name

    def remove_stale_temp_files(self, min_age: float) -> list[str]:
        """Temp files of writes killed midway; call with min_age 0 only while no
        write can run (the GC lock held exclusively)."""
        removed = remove_stale_temp_files(self.cni_dir, min_age)
        removed += remove_stale_temp_files(os.path.join(self.cni_dir, PREV_DIR), min_age)
        if removed:
            report_log.warning("removed %d temp file(s) of interrupted writes in %s: %s",
                               len(removed), self.cni_dir, ", ".join(removed),
                               extra={"temp_removed": {"count": len(removed)}})
        return removed


class _NotARecordFile(Exception):
    pass


def _load(path: str) -> Record:
    """Read one record file without following a symlink or blocking on a FIFO.

    FileNotFoundError: none; _NotARecordFile: a directory or device; ValueError:
    a file that is not a whole record.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError("it is a symlink") from None
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(exc.strerror or str(exc)) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise _NotARecordFile("a directory")
        if not stat.S_ISREG(info.st_mode):
            raise _NotARecordFile("not a regular file")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(_MAX_RECORD + 1)
    if len(raw) > _MAX_RECORD:
        raise ValueError("too large to be a record")
    if not raw.strip():
        raise ValueError("it is empty")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc}") from None
    try:
        return Record.from_dict(data)
    except (KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(f"wrong shape: {exc!r}") from None

