"""`make bench`: teacopy's copy engine against the tools users would pick instead, on one local S3 server.

Everything talks to ONE moto S3 server on 127.0.0.1, started in its own process and wrapped in a
request-counting WSGI middleware (``bench.server``), so request counts are measured, not assumed.
Each tool copies in its own subprocess so its peak RSS can be read from the kernel (``ru_maxrss``).

Modules: ``s3ops`` (classify an HTTP request as an S3 operation and price class), ``server`` (the
counting moto server and its loopback admin endpoints), ``drivers`` (the copying processes: teacopy
and the naive TEA-docs loop), ``cost`` (the USD model), ``runner`` (sets, tools, verification,
report) and ``__main__`` (the command line).
"""
