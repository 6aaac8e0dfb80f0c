"""The training loop, its configuration, sharding and progress display."""
