"""The archive site: server-rendered reader pages, a client of the project's own GraphQL schema.

Every page runs one GraphQL document kept in ``documents/`` (allow-listed, executed in-process
through the schema, limits and executor of ``/graphql``) and renders what it returns with the
Jinja2 templates in ``templates/``; the site reads no table itself.
"""
