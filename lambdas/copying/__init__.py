"""CopyBatch: stream each object of a batch into the destination, verified; multipart continued across invocations."""
