"""The GraphQL API, the Starlette app and the ``statements`` command line."""
