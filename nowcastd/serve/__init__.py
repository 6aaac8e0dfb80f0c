"""The streaming daemon: service loop, pipeline, forecaster, buffer, watcher, metrics, notify."""
