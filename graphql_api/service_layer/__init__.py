"""Application services the CLI and the API both call: import, demo, as-of reads, the live hub,
reads from replicas."""
