"""Standard input, spoken as it arrives (for any streaming program piped in).

Reads whatever is available (not lines, not until EOF) in a worker thread, so
it works the same for pipes, files and terminals without putting the shared
file description into non-blocking mode. UTF-8 split across reads is decoded
correctly; undecodable bytes are replaced rather than failing the answer.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import AsyncGenerator

import trio

from . import BaseSource


class StdinSource(BaseSource):
    def __init__(self, fd: int = 0, read_size: int = 4096) -> None:
        super().__init__()
        self.fd = fd
        self.read_size = read_size
        self._limiter = trio.CapacityLimiter(1)

    async def stream(self) -> AsyncGenerator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        said = False
        while True:
            data = await trio.to_thread.run_sync(
                os.read, self.fd, self.read_size, abandon_on_cancel=True, limiter=self._limiter
            )
            text = decoder.decode(data, final=not data)
            if text:
                said = said or not text.isspace()
                yield text
            if not data:
                if not said:
                    self.notices.append("nothing to say: standard input was empty")
                return
