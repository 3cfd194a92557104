"""The ``statements`` command line."""
