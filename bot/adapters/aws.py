"""boto3 clients built one way: region and endpoint from the settings, standard retries."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from bot.settings import Settings

# Standard mode retries throttling (ThrottlingException, ProvisionedThroughputExceeded…) and
# 5xx with exponential backoff and jitter; five attempts ride out a short burst.
RETRIES = {"mode": "standard", "max_attempts": 5}


def client(service: str, settings: Settings, **config: Any) -> Any:
    return boto3.session.Session().client(
        service,
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=Config(
            retries=RETRIES,  # type: ignore[arg-type]
            connect_timeout=5,
            read_timeout=30,
            user_agent_extra="cxr-bot",
            **config,
        ),
    )
