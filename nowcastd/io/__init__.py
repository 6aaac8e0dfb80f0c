"""Files in and out: radar readers, domain, transform, forecast files, checkpoints."""
