"""Plan: validate the execution input, resolve its source (keys, manifest, prefix, CMR), stage the batched manifest."""
