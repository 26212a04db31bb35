"""The ``tessera`` command line and the local stack launcher (:mod:`services.cli.stack`)."""
