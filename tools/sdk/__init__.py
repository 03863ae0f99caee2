"""The async Python SDK for the file sync service.

``tools.sdk.client.FileSyncClient`` talks to the service over HTTP; ``tools.sdk.transfer`` moves bodies straight
to and from S3 with the scoped credentials the service mints (its requests are ``tools.sdk.s3``'s, signed
over aiohttp: the client needs no AWS SDK); every failure of either is one of ``tools.sdk.errors`` (a tree
under ``ApiError``), transient ones retried first with ``tools.sdk.retry``'s backoff. Nothing is imported
here, so importing one part never pays for the others. Shared with the service: only the pure rules
(``service.content``, ``service.paths``, ``service.wire``).
"""
