"""``python -m voicestream`` and the ``voicestream`` console script.

The stop signals are set up before the rest of voicestream (and the Anthropic
SDK, which takes seconds to import) is loaded, so a Ctrl-C or SIGTERM at any
moment ends with its exit code and no traceback.
"""

import sys

from . import stopping


def main() -> None:
    stopping.install()
    try:
        from .cli import run

        code = run()
    except KeyboardInterrupt:
        code = stopping.exit_code()
    sys.exit(code)


if __name__ == "__main__":
    main()
