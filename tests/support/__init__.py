"""Shared test machinery: namespaces, configs, running the plugin."""
