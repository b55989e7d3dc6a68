"""Stand-ins for the services multinet talks to, for tests and the demo.

Each speaks the real protocol, so multinet's own clients are exercised unchanged:
``multinet.testing.apiserver`` is an in-memory Kubernetes API server reached through
a kubeconfig, ``multinet.testing.kubelet`` the kubelet's PodResources gRPC API.
"""
