"""RefreshCredentials Lambda: fetch or coalesced refresh of TEA credentials into the cache secret."""
