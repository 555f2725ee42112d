"""The ``openjmp`` command line: one entry point, one module per verb."""
