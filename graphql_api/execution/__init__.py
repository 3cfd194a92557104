"""The executor: query plans compiled once per document, and the caches they share."""
