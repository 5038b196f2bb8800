"""The bytes of the images a server answered lately. A correction names a prediction, not its
image, and the store keeps only an image's digest with each prediction; so that the image a
correction is about can be kept for retraining, the server holds recent image files in memory,
bounded in bytes, oldest out first. A correction that arrives after its image left (or at another
worker) can carry the image again (`image_base64`)."""

from __future__ import annotations

import threading
from collections import OrderedDict


class RecentImages:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._files: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def put(self, digest: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            if digest in self._files:
                self._files.move_to_end(digest)
                return
            self._files[digest] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _, old = self._files.popitem(last=False)
                self._size -= len(old)

    def get(self, digest: str) -> bytes | None:
        with self._lock:
            return self._files.get(digest)

    def __len__(self) -> int:
        return len(self._files)
