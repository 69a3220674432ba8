"""Talking to NASA Earthdata over HTTP: shared HTTP basics, TEA /s3credentials, CMR granule search."""
