"""``python -m hostnet``: the ``hostnet`` command."""

import sys

from hostnet.cli.entry import main

sys.exit(main())
