"""The ``hostnet`` console script and ``python -m hostnet``: imports the command line
only once a Ctrl-C during that import can be answered as the command would answer it
(exit status 130, no traceback)."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from hostnet.cli.main import main as run
        from hostnet.cli.process import die_of_the_signal
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    code = run()
    die_of_the_signal(code)  # (`run`/`ns exec` whose command a signal killed: not back)
    return code
