"""``python -m hostnet.cli``."""

import sys

from hostnet.cli.entry import main

sys.exit(main())
