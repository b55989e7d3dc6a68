"""The CNI protocol: configs, results, versions, errors and plugin execution.

Nothing in this package knows about Kubernetes.
"""
