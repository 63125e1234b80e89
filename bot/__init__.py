"""cxr-bot: a Slack chat-ops bot for pneumonia screening on chest X-rays.

A screening aid, not a diagnosis.
"""

__version__ = "0.1.0"
