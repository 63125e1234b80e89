"""SQLite adapters: what the bot must remember across restarts (processed uploads, operations
in flight, audit log, cost-guard state). One file, one connection, one module per concern."""
