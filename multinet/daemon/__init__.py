"""The node daemon: one long-running process that serves the shim's requests.

It runs the same engine as the in-process plugin, with a shared Kubernetes
client (or watch cache), a bound on concurrent operations, probes and metrics.
"""
