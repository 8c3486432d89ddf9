"""CLI commands (filled in by the owning subsystem)."""
COMMANDS = []
