"""Kubernetes side of multinet: pods, NADs, annotations and device ids."""
