"""The engine's pieces on their own: records, locks, merging."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multinet.attach import merge
from multinet.attach.lock import container_lock, gc_lock
from multinet.attach.plan import Attachment
from multinet.attach.record import AttachmentState, Record, RecordStore
from multinet.cni.errors import CNIError
from multinet.cni.netconf import load_network

NET = load_network({"cniVersion": "1.0.0", "name": "n", "type": "bridge"}, "t")


def test_record_round_trip_is_private_and_atomic(tmp_path):
    """Checklist: LIB-2, LIB-3."""
    store = RecordStore(str(tmp_path / "cni"))
    record = Record("c1", "/var/run/netns/p", "eth0", "K=V", attachments=[
        AttachmentState(Attachment("n", NET, "eth0", True, {"mac": "02:00:00:00:00:01"}),
                        {"cniVersion": "1.0.0"})])
    store.write(record)
    again = store.read("c1")
    assert again.to_dict() == record.to_dict()
    assert again.attachments[0].attachment.capability_args == {"mac": "02:00:00:00:00:01"}
    assert stat.S_IMODE(os.stat(store.path("c1")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.cni_dir).st_mode) == 0o700
    assert list(store.container_ids()) == ["c1"]
    assert not [n for n in os.listdir(store.cni_dir) if n.startswith(".c1")], "no temp left"
    store.remove("c1")
    assert store.read("c1") is None


def test_unreadable_record_is_an_error_not_a_silent_success(tmp_path):
    store = RecordStore(str(tmp_path))
    (tmp_path / "c1").write_text("{half")
    with pytest.raises(CNIError) as err:
        store.read("c1")
    assert err.value.code == 6 and "c1" in err.value.msg
    with pytest.raises(CNIError):
        store.path("../escape")


def test_same_container_is_serialised_others_are_not(tmp_path):
    spans: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}
    a_held, b_in = threading.Event(), threading.Event()
    b_came_while_a_held: list[bool] = []

    def hold(container: str) -> None:
        if container == "b":
            assert a_held.wait(10)
        with container_lock(str(tmp_path), container):
            start = time.monotonic()
            if container == "a":
                a_held.set()
                # Held until b is in: if b had to wait for a, this runs out instead.
                b_came_while_a_held.append(b_in.wait(10))
            else:
                b_in.set()
            spans[container].append((start, time.monotonic()))

    threads = [threading.Thread(target=hold, args=(c,)) for c in ("a", "a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (s1, e1), (s2, e2) = sorted(spans["a"])
    assert s2 >= e1, "two operations on one container overlapped"
    assert b_came_while_a_held == [True, True], "another container had to wait"


def test_gc_lock_excludes_container_operations(tmp_path):
    """Checklist: CNI-GC-2."""
    entered = threading.Event()

    def operation() -> None:
        with container_lock(str(tmp_path), "c1"):
            entered.set()

    with gc_lock(str(tmp_path)):
        worker = threading.Thread(target=operation)
        worker.start()
        assert not entered.wait(0.3), "an operation ran during GC"
    assert entered.wait(2)
    worker.join()


def result(*ifnames: str, routes=(), ips=()) -> dict:
    return {"interfaces": [{"name": n, "sandbox": "/x"} for n in ifnames],
            "ips": list(ips), "routes": list(routes)}


def test_merge_reindexes_and_keeps_only_owned_default_routes():
    cluster = result("eth0", ips=[{"address": "198.18.0.2/24", "interface": 0}],
                     routes=[{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}])
    secondary = result("net1", ips=[{"address": "198.18.1.2/24", "interface": 0},
                                    {"address": "fd00:1::2/64"}],
                       routes=[{"dst": "0.0.0.0/0", "gw": "198.18.1.1"},
                               {"dst": "198.19.0.0/16", "gw": "198.18.1.1"}])
    owners = merge.default_route_owners([True, False], [(), ()])
    merged = merge.merge([cluster, secondary], owners)
    assert [ip.get("interface") for ip in merged["ips"]] == [0, 1, None]
    assert merged["routes"] == [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"},
                                {"dst": "198.19.0.0/16", "gw": "198.18.1.1"}]
    assert merge.foreign_default_routes([cluster, secondary], owners)

    asked = merge.requested_gateways([(), ("198.18.1.254",)])
    owners = merge.default_route_owners([True, False], [(), ("198.18.1.254",)])
    moved = merge.merge([cluster, secondary], owners, 0, asked)
    defaults = [r for r in moved["routes"] if r["dst"] == "0.0.0.0/0"]
    assert defaults == [{"dst": "0.0.0.0/0", "gw": "198.18.1.254"}]


@given(st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=6))
def test_every_merged_ip_points_at_its_own_interface(sizes):
    results = []
    for n, size in enumerate(sizes):
        names = [f"if{n}x{i}" for i in range(size)]
        ips = [{"address": f"198.18.{n}.{i + 1}/24", "interface": i} for i in range(size)]
        results.append(result(*names, ips=ips))
    merged = merge.merge(results, {4: 0, 6: 0})
    for ip in merged.get("ips", []):
        n, i = ip["address"].split(".")[2], int(ip["address"].split(".")[3].split("/")[0]) - 1
        assert merged["interfaces"][ip["interface"]]["name"] == f"if{n}x{i}"
