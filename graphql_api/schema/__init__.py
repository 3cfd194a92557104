"""The GraphQL schema: Query, Mutation and Subscription, their types, inputs and loaders."""
