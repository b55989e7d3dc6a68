"""multinet: a multi-network CNI meta-plugin for Kubernetes."""

__version__ = "0.1.0"
