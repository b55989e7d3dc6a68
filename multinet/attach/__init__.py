"""The engine: plan the attachments of a pod, run their delegates, merge, record."""
