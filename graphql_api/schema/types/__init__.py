"""The GraphQL types of the query side, one Strawberry type (or a small family) per module.

Types hold what clients read. Plain fields are attributes set when a type is built from a
read-model row (they resolve synchronously, without a resolver); only relation fields have
resolvers, and those go through the request's DataLoaders (:mod:`graphql_api.schema.loaders`).
"""
