"""The Slack adapter: Bolt app, listeners (thin, grouped by surface), Block Kit, transports."""
