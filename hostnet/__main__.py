"""``python -m hostnet``: the ``hostnet`` command."""

import sys

from hostnet.cli.main import main

sys.exit(main())
