"""The async Python SDK for the file sync service.

``FileSyncClient`` talks to the service over HTTP; ``tools.sdk.transfer`` moves bodies straight to and from
S3 with the scoped credentials the service mints (aioboto3 is imported only when a transfer happens).
Shared with the service: only the pure rules (``service.content``, ``service.paths``, ``service.wire``).
"""

from tools.sdk.client import ApiError, FileSyncClient

__all__ = ["ApiError", "FileSyncClient"]
