"""S3's own rules, in one place: bucket/key/prefix names, error-code groups, size limits."""
