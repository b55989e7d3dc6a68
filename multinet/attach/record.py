"""The per-container record DEL works from: what was planned, what was added.

One JSON file per container under cniDir, always replaced atomically (temp file,
fsync, rename), so a reader sees either the old record or the new one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from multinet.attach.lock import LOCK_DIR
from multinet.attach.plan import Attachment
from multinet.cni.errors import DECODE_FAILURE, IO_FAILURE, CNIError
from multinet.cni.request import CONTAINER_ID_RE
from multinet.fileio import atomic_write, fsync_dir

KIND = "multinetRecordV1"
ADDING = "adding"  # written before the first delegate runs
ADDED = "added"


@dataclass
class AttachmentState:
    attachment: Attachment
    result: dict[str, Any] | None = None  # the delegate's result, in its own version
    started: bool = False  # its delegates ran in this process (not stored)


@dataclass
class Record:
    container_id: str
    netns: str
    ifname: str
    cni_args: str
    state: str = ADDING
    attachments: list[AttachmentState] = field(default_factory=list)
    pod: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "containerId": self.container_id,
            "netns": self.netns,
            "ifname": self.ifname,
            "cniArgs": self.cni_args,
            "state": self.state,
            "pod": self.pod,
            "attachments": [
                {**a.attachment.to_record(), "result": a.result} for a in self.attachments
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        if data.get("kind") != KIND:
            raise ValueError(f"unknown record kind {data.get('kind')!r}")
        return cls(
            container_id=data["containerId"],
            netns=data.get("netns", ""),
            ifname=data.get("ifname", ""),
            cni_args=data.get("cniArgs", ""),
            state=data.get("state", ADDING),
            pod=data.get("pod", {}),
            attachments=[
                AttachmentState(Attachment.from_record(a), a.get("result"))
                for a in data.get("attachments", [])
            ],
        )


class RecordStore:
    """Records of one cniDir. Callers hold the container's lock."""

    def __init__(self, cni_dir: str) -> None:
        self.cni_dir = cni_dir

    def path(self, container_id: str) -> str:
        if not CONTAINER_ID_RE.match(container_id):
            raise CNIError(IO_FAILURE, f"refusing record path for container id {container_id!r}")
        return os.path.join(self.cni_dir, container_id)

    def read(self, container_id: str) -> Record | None:
        path = self.path(container_id)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            return Record.from_dict(data)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, RecursionError, CNIError) as exc:
            # Atomic writes make this a disk fault; keep the file for a person to see.
            raise CNIError(DECODE_FAILURE, f"record {path} is unreadable: {exc}") from None

    def write(self, record: Record) -> None:
        # Compact: the C encoder; indenting would take the slow Python one on a hot path.
        data = json.dumps(record.to_dict(), separators=(",", ":")).encode()
        atomic_write(self.path(record.container_id), data)

    def remove(self, container_id: str) -> None:
        try:
            os.unlink(self.path(container_id))
        except FileNotFoundError:
            return
        fsync_dir(self.cni_dir)

    def container_ids(self) -> Iterator[str]:
        try:
            names = sorted(os.listdir(self.cni_dir))
        except FileNotFoundError:
            return
        for name in names:
            if name != LOCK_DIR and CONTAINER_ID_RE.match(name):
                yield name
