"""The CopyBatch logic: stream each object of one batch from the DAAC bucket into the destination.

This module is the package's public face (the CopyBatch handler, the bench and the tests import
``copy_batch`` from here); the work is done by one module per responsibility:

- ``batch.py``        ``copy_batch`` / ``BatchRun``: what is left to do, scheduling objects on a thread
                      pool, stopping at the deadline or credential expiry, the invocation's answer;
- ``objects.py``      ``ObjectCopier``: one object — overwrite policy, skip-if-identical, dry run, single PUT;
- ``multipart.py``    ``MultipartUploader``: parts pipelined with bounded memory, paused and resumed;
- ``checkpoints.py``  ``Checkpoint`` / ``CheckpointStore``: paused uploads in the staging bucket;
- ``results.py``      the result log: recorded keys, result files, a batch's fatal error;
- ``source.py``, ``destination.py``  the two buckets: their S3 calls and what their errors mean;
- ``stream.py``       the source body as exact reads, re-opened with a ranged GET when it breaks;
- ``signals.py``      the internal signals (object failed, integrity, cancelled, paused; the stop signal);
- ``digests.py``      checksums whose state survives the invocation.

Every AWS client is injected, so the whole engine runs against moto (or fakes) without patching:

- ``source_s3`` carries the temporary TEA credentials (GetObject only);
- ``dest_s3`` writes the destination (the Lambda role);
- ``staging_s3`` reads and writes the run's result log and upload checkpoints in the staging bucket.

Progress is durable in the staging bucket: each invocation writes result files
(``runs/<run_id>/results/<batch_id>/<seq>.json``, a JSON list of ``ObjectResult.to_dict()``) with the
objects it finished, and the next invocation of the same batch skips every key already recorded there.
So a retry after ``CredentialsExpired``, ``TransientCopyError``, a deadline continuation or a crash
resumes without re-reporting anything.

Per object (``skip-if-identical``, the default): HEAD destination (404) + GET source + PUT destination.
A destination written by teacopy records the source ETag and size in its metadata; the GET then
carries ``IfNoneMatch=<recorded ETag>`` so an unchanged source answers 304 and nothing is transferred.

Integrity: while streaming, the engine computes the object's full-object CRC64NVME (S3's own) and,
when the plan carries one, the expected MD5/SHA digest. The CRC64NVME goes with the PutObject /
CompleteMultipartUpload, so S3 itself rejects bytes that differ from what was read; the expected
digest is compared before the object is completed. Sizes are always checked. On any mismatch the
upload is aborted: the destination never shows a truncated or corrupt object.

Objects from ``stream_min_bytes`` (8 MiB) up to the multipart threshold whose source ETag is their MD5
are *streamed* (``dest_stream_s3``): the GET body is the PutObject body, sent as it arrives, with
``Content-MD5`` = the ETag (S3 rejects other bytes); the engine checks that MD5, the size and the plan's
digest before it hands over the last piece, so a mismatch abandons the request and nothing is stored.

Large objects are uploaded in parts, pipelined and with bounded memory (``inflight_parts`` parts
buffered or uploading). An object that cannot finish in one invocation (Lambda deadline, TEA
credentials near expiry, a transient error) is *paused*, not aborted: the upload id, the completed
parts and the running checksums are saved in a checkpoint (``runs/<run>/uploads/<batch>/…``) and the
next invocation continues from the last completed part with a ranged GET (``IfMatch`` the source ETag,
so a source that changed meanwhile restarts the object from zero). Summarize aborts the uploads of
checkpoints a failed run leaves behind.
"""

from __future__ import annotations

from lambdas.copying.batch import BatchRun, copy_batch
from lambdas.copying.multipart import part_size_for
from lambdas.copying.objects import META_SOURCE_ETAG, META_SOURCE_SIZE, META_VERIFIED

__all__ = ["META_SOURCE_ETAG", "META_SOURCE_SIZE", "META_VERIFIED", "BatchRun", "copy_batch", "part_size_for"]
