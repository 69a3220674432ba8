"""Sizes: units, and the S3 and Step Functions limits teacopy's design depends on (one place each)."""

from __future__ import annotations

# the units (defined in the bottom layer), re-exported next to the limits written with them
from lambdas.contracts.units import GIB as GIB
from lambdas.contracts.units import KIB as KIB
from lambdas.contracts.units import MIB as MIB

# S3
MAX_KEY_BYTES = 1024  # a key is any UTF-8 string of at most 1,024 bytes
MIN_PART_BYTES = 5 * MIB  # every multipart part but the last
MAX_PARTS = 10_000  # parts per multipart upload
MAX_PUT_BYTES = 5 * GIB  # one PutObject

# Step Functions: an execution input and every state payload (StartExecution refuses a larger input).
MAX_STATE_BYTES = 256 * KIB
