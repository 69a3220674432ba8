"""TEA credentials for every worker: the cache secret, the refresh lease, the coalesced refresh."""
