"""``python -m hostnet.cli``."""

import sys

from hostnet.cli.main import main

sys.exit(main())
