"""CLI: latentedit generate."""
COMMANDS = []
