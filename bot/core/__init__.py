"""The domain: intake, classification, model lifecycle and cost.

Nothing in this package imports Slack or boto3; it talks to the world through the
protocols in `bot.core.ports`, which adapters in `bot.adapters`, `bot.state` and
`bot.slack` implement.
"""
