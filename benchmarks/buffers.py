"""Buffer policies compared in virtual time: ``voicestream bench``, as a script.

    .venv/bin/python benchmarks/buffers.py [--out DIR] [--seed N]

The code is voicestream.bench (importable and tested); results go to
benchmarks/results by default.
"""

import sys

from voicestream.bench import main

if __name__ == "__main__":
    sys.exit(main())
