"""``python -m voicestream`` and the ``voicestream`` console script.

The stop signals are set up before the rest of voicestream (and the Anthropic
SDK, which takes seconds to import) is loaded, so a Ctrl-C or SIGTERM at any
moment ends with its exit code and no traceback.
"""

import contextlib
import os
import sys

from . import stopping


def main() -> None:
    try:
        stopping.install()  # inside the try: a signal right after it is caught too
        from .cli import run

        code = run()
        stopping.check()
    except KeyboardInterrupt:
        code = stopping.exit_code()
    except Exception as e:
        if not stopping.interrupted(e):
            raise
        code = stopping.exit_code()
    if code in stopping.EXIT_CODES:
        # Stopped by a signal. After a KeyboardInterrupt during start-up, CPython may
        # end the process by SIGINT at exit even though it was caught (seen in 1 run
        # of 20 stopped 0.15 s in), instead of with this code: leave directly, with
        # the output flushed (every file of ours is closed by now).
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a reader that went away
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
