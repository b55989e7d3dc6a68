"""Thread-safe in-memory object store with the API server's write semantics.

Every write bumps one global resourceVersion and is kept in a bounded history that
watches read from; a watch that asks for a version older than the history answers
410 Gone, as the real server does when etcd has compacted it.
"""

from __future__ import annotations

import bisect
import copy
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from multinet.testing.patching import PatchError, json_patch, merge_patch, strategic_merge_patch
from multinet.testing.resources import (
    PODS,
    STALE,
    ApiError,
    ResourceType,
    already_exists,
    bad_request,
    check_metadata_types,
    check_pod_spec_update,
    conflict,
    gone,
    not_found,
    validate,
)

Matcher = Callable[[Mapping[str, Any]], bool]
Key = tuple[str, str]

PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
}


@dataclass(frozen=True)
class Change:
    """One write, as watches see it. Objects are in stored form."""

    rv: int
    type: str  # ADDED, MODIFIED or DELETED
    bucket: str
    old: dict[str, Any] | None
    new: dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _generate_name(prefix: str) -> str:
    # Same alphabet as the real server: no vowels, no look-alike digits.
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(5))


def _without_meta_status(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


_SERVER_OWNED = ("uid", "creationTimestamp", "deletionTimestamp",
                 "deletionGracePeriodSeconds", "generation")


class Store:
    """Objects by bucket and (namespace, name), with a change history for watches."""

    def __init__(self, history: int = 1000) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._buckets: dict[str, dict[Key, dict[str, Any]]] = {}
        self._rv = 0
        self._history: list[Change] = []
        self._limit = max(1, history)
        # Every change with rv > floor is still in the history.
        self._floor = 0

    # -- reading ------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    def get(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        with self._cond:
            stored = self._bucket(rtype).get((namespace, name))
            if stored is None:
                raise not_found(rtype, name)
            return rtype.to_api(stored)

    def list(self, rtype: ResourceType, namespace: str | None,
             match: Matcher | None = None) -> tuple[list[dict[str, Any]], int]:
        """Matching objects (API form, in namespace/name order) and the list's version."""
        with self._cond:
            items = [
                rtype.to_api(obj)
                for key, obj in sorted(self._bucket(rtype).items())
                if (namespace is None or key[0] == namespace) and (match is None or match(obj))
            ]
            return items, self._rv

    def snapshot(self, rtype: ResourceType,
                 namespace: str | None) -> tuple[list[dict[str, Any]], int]:
        """Stored-form objects and the version they are current at, for a watch start."""
        with self._cond:
            objs = [copy.deepcopy(obj) for key, obj in sorted(self._bucket(rtype).items())
                    if namespace is None or key[0] == namespace]
            return objs, self._rv

    # -- writing ------------------------------------------------------------

    def create(self, rtype: ResourceType, namespace: str | None, obj: Any, *,
               api: bool = True, dry_run: bool = False) -> dict[str, Any]:
        """Create ``obj``. With ``api`` False (direct test access) the object is
        stored as given (status included) and only missing server fields are set."""
        if not isinstance(obj, dict):
            raise bad_request("the body of the request must be a JSON object")
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})
        check_metadata_types(obj)
        meta = obj["metadata"]
        given_ns = meta.get("namespace") or ""
        if namespace is None:
            namespace = given_ns or "default"
        elif given_ns and given_ns != namespace:
            raise bad_request("the namespace of the provided object does not match the "
                              "namespace sent on the request")
        meta["namespace"] = namespace
        if api and meta.get("resourceVersion"):
            raise ApiError(500, "InternalError",
                           "resourceVersion should not be set on objects to be created")
        with self._cond:
            bucket = self._bucket(rtype)
            if not meta.get("name") and meta.get("generateName"):
                name = _generate_name(meta["generateName"])
                while (namespace, name) in bucket:
                    name = _generate_name(meta["generateName"])
                meta["name"] = name
            if api:
                validate(rtype, obj)
            elif not meta.get("name"):
                raise ValueError("object has no metadata.name")
            key = (namespace, meta["name"])
            if key in bucket:
                raise already_exists(rtype, meta["name"])
            new = rtype.to_store(obj)
            nmeta = new["metadata"]
            if api:
                for field in _SERVER_OWNED:
                    nmeta.pop(field, None)
                if rtype.bucket == PODS.bucket:
                    # A pod's status is the kubelet's to write; create resets it.
                    new["status"] = {"phase": "Pending"}
            nmeta.setdefault("uid", str(uuid.uuid4()))
            nmeta.setdefault("creationTimestamp", now())
            nmeta.setdefault("generation", 1)
            nmeta.pop("resourceVersion", None)
            if dry_run:
                return rtype.to_api(new)
            nmeta["resourceVersion"] = self._bump()
            bucket[key] = new
            self._record("ADDED", rtype.bucket, None, new)
            return rtype.to_api(new)

    def update(self, rtype: ResourceType, namespace: str, name: str, obj: Any, *,
               subresource: str | None = None, api: bool = True,
               dry_run: bool = False) -> dict[str, Any]:
        """PUT semantics. With ``api`` False the whole object is replaced unconditionally."""
        if not isinstance(obj, dict):
            raise bad_request("the body of the request must be a JSON object")
        with self._cond:
            current = self._bucket(rtype).get((namespace, name))
            if current is None:
                raise not_found(rtype, name)
            return self._update_locked(rtype, namespace, name, current, copy.deepcopy(obj),
                                       subresource=subresource, api=api, dry_run=dry_run)

    def patch(self, rtype: ResourceType, namespace: str, name: str, content_type: str,
              body: Any, *, subresource: str | None = None,
              dry_run: bool = False) -> dict[str, Any]:
        """PATCH semantics; the patch applies to the whole object, also for /status."""
        kind = PATCH_TYPES.get(content_type)
        if kind is None or (kind == "strategic" and rtype.custom):
            accepted = [t for t, k in PATCH_TYPES.items()
                        if not (rtype.custom and k == "strategic")]
            raise ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - accepted media "
                           "types include: " + ", ".join(accepted))
        with self._cond:
            current = self._bucket(rtype).get((namespace, name))
            if current is None:
                raise not_found(rtype, name)
            doc = rtype.to_api(current)
            try:
                if kind == "merge":
                    if not isinstance(body, dict):
                        raise PatchError("merge patch must be a JSON object", code=400)
                    patched = merge_patch(doc, body)
                elif kind == "strategic":
                    patched = strategic_merge_patch(doc, body)
                else:
                    patched = json_patch(doc, body)
            except PatchError as exc:
                reason = "Invalid" if exc.code == 422 else "BadRequest"
                raise ApiError(exc.code, reason, str(exc)) from None
            if not isinstance(patched, dict):
                raise bad_request("the patched object is not a JSON object")
            return self._update_locked(rtype, namespace, name, current, patched,
                                       subresource=subresource, api=True, dry_run=dry_run)

    def delete(self, rtype: ResourceType, namespace: str, name: str, *,
               preconditions: Mapping[str, Any] | None = None,
               dry_run: bool = False) -> tuple[dict[str, Any], bool]:
        """Delete now, or mark for deletion while finalizers remain.

        Returns the object (API form) and whether it is gone.
        """
        with self._cond:
            bucket = self._bucket(rtype)
            current = bucket.get((namespace, name))
            if current is None:
                raise not_found(rtype, name)
            meta = current["metadata"]
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise conflict(rtype, name, f"Precondition failed: UID in precondition: "
                                            f"{pre['uid']}, UID in object meta: {meta.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise conflict(rtype, name,
                               "Precondition failed: ResourceVersion in precondition: "
                               f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                               f"{meta['resourceVersion']}")
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp") or dry_run:
                    return rtype.to_api(current), False
                marked = copy.deepcopy(current)
                marked["metadata"]["deletionTimestamp"] = now()
                marked["metadata"]["deletionGracePeriodSeconds"] = 0
                self._commit_modified(rtype, (namespace, name), current, marked)
                return rtype.to_api(marked), False
            if dry_run:
                return rtype.to_api(current), True
            return rtype.to_api(self._commit_deleted(rtype, (namespace, name), current)), True

    # -- watch support ----------------------------------------------------------

    def changes_after(self, cursor: int, timeout: float) -> tuple[list[Change], int]:
        """Changes with rv > cursor, waiting up to ``timeout`` s for one to happen.

        Returns them and the version the caller has now seen everything up to.
        Raises 410 Gone when the history no longer reaches back to ``cursor``.
        """
        with self._cond:
            if cursor >= self._rv and timeout > 0:
                self._cond.wait(timeout)
            if cursor < self._floor:
                raise gone(f"too old resource version: {cursor} ({self._floor})")
            start = bisect.bisect_right(self._history, cursor, key=lambda c: c.rv)
            return self._history[start:], max(cursor, self._rv)

    def check_watchable(self, cursor: int) -> None:
        with self._cond:
            if cursor < self._floor:
                raise gone(f"too old resource version: {cursor} ({self._floor})")

    def compact(self) -> None:
        """Forget the history: resuming from any older version now answers 410."""
        with self._cond:
            self._history.clear()
            self._floor = self._rv

    def wake(self) -> None:
        """Wake every waiting watch so it can notice shutdown or an outage."""
        with self._cond:
            self._cond.notify_all()

    # -- internals ------------------------------------------------------------

    def _bucket(self, rtype: ResourceType) -> dict[Key, dict[str, Any]]:
        return self._buckets.setdefault(rtype.bucket, {})

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _record(self, kind: str, bucket: str, old: dict[str, Any] | None,
                new: dict[str, Any]) -> None:
        self._history.append(Change(int(new["metadata"]["resourceVersion"]), kind, bucket,
                                    copy.deepcopy(old), copy.deepcopy(new)))
        if len(self._history) > self._limit:
            dropped = self._history[: len(self._history) - self._limit]
            del self._history[: len(dropped)]
            self._floor = dropped[-1].rv
        self._cond.notify_all()

    def _commit_modified(self, rtype: ResourceType, key: Key, old: dict[str, Any],
                         new: dict[str, Any]) -> None:
        new["metadata"]["resourceVersion"] = self._bump()
        self._bucket(rtype)[key] = new
        self._record("MODIFIED", rtype.bucket, old, new)

    def _commit_deleted(self, rtype: ResourceType, key: Key,
                        current: dict[str, Any]) -> dict[str, Any]:
        final = copy.deepcopy(current)
        final["metadata"]["resourceVersion"] = self._bump()
        del self._bucket(rtype)[key]
        self._record("DELETED", rtype.bucket, current, final)
        return final

    def _update_locked(self, rtype: ResourceType, namespace: str, name: str,
                       current: dict[str, Any], obj: dict[str, Any], *,
                       subresource: str | None, api: bool, dry_run: bool) -> dict[str, Any]:
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}
        check_metadata_types(obj)
        meta = obj["metadata"]
        cur_meta = current["metadata"]
        if api:
            if meta.get("name", name) != name:
                raise bad_request(f"the name of the object ({meta.get('name')}) does not match "
                                  f"the name on the URL ({name})")
            if meta.get("namespace", namespace) not in (namespace, ""):
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            if meta.get("uid") and meta["uid"] != cur_meta.get("uid"):
                raise conflict(rtype, name, f"Precondition failed: UID in precondition: "
                                            f"{meta['uid']}, UID in object meta: "
                                            f"{cur_meta.get('uid')}")
            # Optimistic concurrency: a resourceVersion in the body must be current.
            given_rv = meta.get("resourceVersion")
            if given_rv and given_rv != cur_meta["resourceVersion"]:
                raise conflict(rtype, name, STALE)
        new = rtype.to_store(obj)
        if api and subresource == "status":
            # Through /status only status and the labels/annotations change.
            result = copy.deepcopy(current)
            for part, source in (("status", new), ("labels", new["metadata"]),
                                 ("annotations", new["metadata"])):
                target = result if part == "status" else result["metadata"]
                if source.get(part) is not None:
                    target[part] = source[part]
                else:
                    target.pop(part, None)
        else:
            result = new
            if api and rtype.status_subresource:
                # The main resource cannot write status when /status exists.
                if "status" in current:
                    result["status"] = copy.deepcopy(current["status"])
                else:
                    result.pop("status", None)
            if api and rtype is PODS:
                check_pod_spec_update(rtype, current, result)
        rmeta = result["metadata"]
        for field in _SERVER_OWNED:
            if field in cur_meta:
                rmeta[field] = copy.deepcopy(cur_meta[field])
            else:
                rmeta.pop(field, None)
        rmeta["name"], rmeta["namespace"] = name, namespace
        if api:
            validate(rtype, result)
        if _without_meta_status(result) != _without_meta_status(current):
            rmeta["generation"] = int(cur_meta.get("generation", 1)) + 1
        rmeta["resourceVersion"] = cur_meta["resourceVersion"]
        # A write that changes nothing is not stored: no new version, no watch event.
        if result == current or dry_run:
            return rtype.to_api(result)
        key = (namespace, name)
        if rmeta.get("deletionTimestamp") and not rmeta.get("finalizers"):
            # The last finalizer is gone: the pending deletion completes.
            self._bucket(rtype)[key] = result
            return rtype.to_api(self._commit_deleted(rtype, key, result))
        self._commit_modified(rtype, key, current, result)
        return rtype.to_api(result)
