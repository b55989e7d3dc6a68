"""The device-info `cni/` directory exists before the delegate runs (DI-4.2.1-a)."""

from __future__ import annotations

import os
import stat

from support.k8s import cni_args, nad_obj, network_status, pod_obj

from multinet.testing import configs

INFO = {"type": "vhost-user", "version": "1.1.0",
        "vhost-user": {"mode": "server", "path": "/var/run/vhost/sock0"}}


def test_di_4_2_1_a_cni_dir_is_created_without_a_resource_name(cnode, api, pod, workdir):
    """DI-4.2.1-a: a NAD whose plugin declares CNIDeviceInfoFile, with no
    resourceName (so no device-plugin file is copied), gets a path in a
    `cni/` directory that exists (created 0700); the plugin's file lands there and
    is reported in network-status, and DEL removes it."""
    devinfo_dir = os.path.join(workdir, "devinfo")  # missing: multinet makes it
    api.create(nad_obj("kube-system", "cluster", configs.bridge_net("cluster", cnode.ipam_dir)))
    api.create(nad_obj("ns1", "vhost", {
        "cniVersion": "1.0.0", "name": "vhost", "type": "devinfo-writer", "deviceInfo": INFO,
        "capabilities": {"CNIDeviceInfoFile": True}}))
    conf = cnode.conf([], kubeconfig=str(api.kubeconfig), clusterNetwork="cluster",
                      deviceInfoDir=devinfo_dir)
    p = api.create(pod_obj("ns1", "p1", {"k8s.v1.cni.cncf.io/networks": "vhost"}))
    cnode.cni("ADD", conf, "cdevinfo", pod.path, args=cni_args(p, "cdevinfo")).ok()

    cni_dir = os.path.join(devinfo_dir, "cni")
    mode = os.lstat(cni_dir).st_mode
    assert stat.S_ISDIR(mode) and stat.S_IMODE(mode) == 0o700
    path = os.path.join(cni_dir, "vhost-cdevinfo_net1")
    assert os.path.isfile(path)
    status = network_status(api.get("Pod", "ns1", "p1"))
    assert status[1]["interface"] == "net1" and status[1]["device-info"] == INFO
    assert "eth0" in pod.links() and "net1" not in pod.links()  # the stand-in makes no link

    cnode.cni("DEL", conf, "cdevinfo", pod.path, args=cni_args(p, "cdevinfo")).ok()
    assert not os.path.exists(path)
    assert cnode.records() == []
