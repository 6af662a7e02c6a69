"""The ``hostnet`` command line (thin: parse, call the Controller, print).

- ``main``: argv in, exit code out; the ``hostnet`` console script and
  ``python -m hostnet.cli`` call it.
- ``commands``: one function per subcommand, registered in ``COMMANDS``.
- ``context``: the global options, the Controller factory and output helpers.
- ``table``: aligned tables for human output.

Nothing is imported here, so ``python -m hostnet.cli.main`` runs without a second copy
of the module.
"""
