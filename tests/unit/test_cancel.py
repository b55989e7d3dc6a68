"""A cancelled ADD writes no intent and runs no delegate; a DEL marker cancels it."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from multinet.attach import delmark
from multinet.attach.add import run_add
from multinet.attach.conf import load_conf
from multinet.attach.plan import plan_from_delegates
from multinet.attach.record import RecordStore
from multinet.cni.cancel import Cancel
from multinet.cni.errors import TRY_AGAIN_LATER, CNIError
from multinet.cni.request import request_from_env
from multinet.testing import configs

RECORDER_DIR = os.path.join(os.path.dirname(__file__), "..", "plugins")


def add_request(tmp_path, container: str = "c1"):
    record = str(tmp_path / "calls.jsonl")
    delegate = {"cniVersion": "1.0.0", "name": "rec", "type": "recorder", "recordFile": record}
    conf = configs.multinet_conf(str(tmp_path / "cni"), [delegate], bin_dir=RECORDER_DIR)
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": container, "CNI_NETNS": str(tmp_path),
           "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}
    request = request_from_env(env, json.dumps(conf).encode())
    loaded = load_conf(request.config)
    return request, loaded, plan_from_delegates(loaded, request), record


def test_a_hung_up_add_writes_no_intent(tmp_path, monkeypatch):
    request, conf, plan, record = add_request(tmp_path)
    writes = []
    real = RecordStore.write
    monkeypatch.setattr(RecordStore, "write", lambda self, r: writes.append(r) or real(self, r))
    hung_up = threading.Event()
    hung_up.set()
    with pytest.raises(CNIError) as err:
        run_add(request, conf, plan, cancel=Cancel(hung_up))
    assert err.value.code == TRY_AGAIN_LATER and "hung up" in err.value.msg
    assert writes == [], "the intent was written for an ADD nobody waits for"
    assert not os.path.exists(record)


def test_a_later_del_marker_cancels_an_add_an_earlier_one_does_not(tmp_path):
    request, conf, plan, record = add_request(tmp_path)
    arrived = time.time_ns()
    delmark.mark(conf.cni_dir, "c1", arrived - 10**9)  # a DEL from before: not ours
    later = Cancel(None, delmark.later_del(conf.cni_dir, "c1", arrived))
    assert later.reason() is None
    delmark.mark(conf.cni_dir, "c1", arrived + 1)
    with pytest.raises(CNIError) as err:
        run_add(request, conf, plan, cancel=later)
    assert err.value.code == TRY_AGAIN_LATER and "DEL" in err.value.msg
    assert not os.path.exists(record)
    assert RecordStore(conf.cni_dir).read("c1") is None
