"""CopyBatch Lambda: copies one batch of the manifest (one Distributed Map child)."""
