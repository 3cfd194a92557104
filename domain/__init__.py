"""The statements domain: events, commands, rules and the archive importer (stdlib only)."""
