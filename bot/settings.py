"""All configuration, in one place: environment variables (and an optional `.env`).

Every field is documented in the README's configuration table; `load_settings` turns a
validation failure into one message that names every missing or invalid value.
"""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SLACK_API_URL = "https://slack.com/api/"

CommaList = Annotated[list[str], NoDecode]


class SettingsError(Exception):
    """Raised by `load_settings` with a message meant for the person starting the bot."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- Slack -----------------------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(None, description="Bot token, xoxb-…")
    slack_app_token: SecretStr | None = Field(
        None, description="App-level token, xapp-… (Socket Mode)"
    )
    slack_signing_secret: SecretStr | None = Field(None, description="Signing secret (HTTP mode)")
    slack_api_url: str = Field(SLACK_API_URL, description="Slack Web API base URL")
    slack_file_hosts: CommaList = Field(
        default_factory=lambda: ["files.slack.com"],
        description="Hosts whose /files-pri/ paths get the bot token for downloads",
    )
    port: int = Field(3000, ge=1, le=65535, description="HTTP port for /slack/events and /healthz")
    host: str = Field("0.0.0.0", description="Address the HTTP server binds")

    http_header_timeout_s: float = Field(
        10.0, gt=0, description="A request's head must arrive within this (HTTP mode)"
    )
    http_body_timeout_s: float = Field(10.0, gt=0, description="Its body, within this after")
    http_max_body_kb: int = Field(512, ge=16, description="Larger request bodies get a 413")
    http_max_connections: int = Field(
        1000, ge=16, description="Open connections; past it the oldest idle or slow one is closed"
    )

    # --- AWS (credentials come from boto3's usual chain: env, profile, instance role) --------
    aws_region: str | None = Field(
        None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    aws_endpoint_url: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL")

    # --- The model --------------------------------------------------------------------------
    cxr_project_arn: str | None = None
    cxr_project_version_arn: str | None = None
    cxr_local_fallback: bool = Field(
        True, description="Let the local model answer while the Rekognition model is not running"
    )
    cxr_local_model_path: Path | None = Field(None, description="ONNX file; default: bundled model")
    cxr_confidence_threshold: float = Field(0.70, ge=0.5, le=1.0)
    cxr_heatmaps: bool = Field(True, description="Post a class activation map (local model)")
    cxr_heatmap_normal: bool = Field(False, description="Also post a heatmap for Normal verdicts")
    cxr_guard: Literal["learned", "heuristic"] = Field(
        "learned",
        description="Not-a-chest-X-ray guard: learned (the local model's view) or heuristic",
    )
    cxr_score_sum_tolerance: float = Field(
        0.02,
        ge=0,
        le=0.5,
        description="How far a model's two scores may sum from 100% (0.02 = 2 points)",
    )

    # --- Intake -----------------------------------------------------------------------------
    cxr_max_upload_mb: float = Field(25.0, gt=0, le=1024)
    cxr_max_pixels: int = Field(60_000_000, ge=1_000_000, description="Decompression-bomb cap")
    cxr_concurrency: int = Field(4, ge=1, le=64, description="Images processed at once")
    cxr_allowed_channels: CommaList = Field(default_factory=list)
    cxr_refuse_phi: bool = Field(
        False,
        description="Refuse files carrying patient identifiers instead of classifying them",
    )
    cxr_shell_batch: int = Field(
        10, ge=1, le=100, description="Local shell: images sent per message when a line names more"
    )
    cxr_upload_lease_seconds: float = Field(
        30.0,
        ge=1,
        description="An upload left by a stopped or crashed instance is resumed after this",
    )

    # --- People and places ------------------------------------------------------------------
    cxr_admins: CommaList = Field(
        default_factory=list, description="Slack user IDs (U…) or user group IDs (S…)"
    )
    cxr_ops_channel: str | None = None
    # --- The learning loop: reviews, promotion, two models ----------------------------------
    cxr_reviewers: CommaList = Field(
        default_factory=list, description="Slack user IDs (U…) or user group IDs (S…)"
    )
    cxr_promote_min_reviewed: int = Field(
        30, ge=1, description="Reviewed cases needed to compare versions on them, not on F1"
    )
    cxr_both_models: bool = Field(
        False, description="Rekognition and the local model both classify; disagreement shown"
    )
    cxr_db_path: Path = Path("cxr.db")
    cxr_database_url: SecretStr | None = Field(
        None,
        description="postgresql://user:password@host:5432/db: state in PostgreSQL, shared by"
        " several replicas; takes precedence over CXR_DB_PATH (no SQLite file is made)",
    )
    cxr_log_format: Literal["json", "text"] = "json"
    cxr_log_level: str = "INFO"

    # --- Lifecycle and prices (estimates, from AWS's public prices) -------------------------
    cxr_price_inference_hour: float = Field(4.00, ge=0, description="USD per inference-unit hour")
    cxr_price_training_hour: float = Field(1.00, ge=0, description="USD per training hour")
    cxr_training_output_s3: str | None = Field(
        None, description="s3://bucket/prefix for manifests and training output"
    )
    cxr_lifecycle_poll_seconds: float = Field(30.0, gt=0)
    # --- Lifecycle commands (issue 4: /cxr start | stop | train) ----------------------------
    cxr_max_inference_units: int = Field(
        10, ge=1, description="Most inference units /cxr start may ask for (a typo guard)"
    )
    cxr_train_min_images_per_label: int = Field(
        10, ge=1, description="/cxr train refuses labels with fewer images than this"
    )

    @field_validator("cxr_training_output_s3")
    @classmethod
    def _training_output(cls, value: str | None) -> str | None:
        from bot.core.training_data import S3Uri

        if value and value.strip():
            return str(S3Uri.parse(value))  # ValueError names the problem
        return None

    # --- (end of the lifecycle block) --------------------------------------------------------

    # --- Cost guard -------------------------------------------------------------------------
    cxr_watch_interval_minutes: float = Field(5.0, gt=0)
    cxr_idle_alert_minutes: float = Field(30.0, gt=0)
    cxr_auto_stop_minutes: float | None = Field(None, gt=0, description="Off when unset")
    cxr_schedule: str | None = Field(None, description='e.g. "Mon-Fri 08:00-18:00"')
    cxr_timezone: str = "UTC"
    cxr_spend_summary_time: time | None = Field(time(9, 0), description="Daily, in CXR_TIMEZONE")
    cxr_idle_alert_max_gap_minutes: float = Field(
        240.0, gt=0, description="Longest wait between idle reminders (they back off: 2N, 4N…)"
    )
    cxr_schedule_start_lead_minutes: float = Field(
        15.0, ge=0, description="Start the scheduled model this long before its window"
    )
    cxr_schedule_inference_units: int = Field(1, ge=1, description="Units for scheduled starts")
    cxr_cloudwatch_usage: bool = Field(
        True,
        description="Read CloudWatch: units in service (when a run began) and any request "
        "counts it reports, as use. AWS documents request metrics per operation, not per "
        "version, so their absence never counts as idle",
    )
    cxr_sole_client: bool = Field(
        False,
        description="The bot is the only client of the project's models: auto-stop may act on "
        "any version",
    )
    cxr_owned_versions: CommaList = Field(
        default_factory=list,
        description="Versions only the bot calls: auto-stop may act on these (names)",
    )

    @field_validator("cxr_schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        from bot.core.schedule import Schedule

        if value and value.strip():
            Schedule.parse(value)  # ScheduleError (a ValueError) names the bad part
            return value.strip()
        return None

    @field_validator("cxr_database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if urlsplit(value.get_secret_value()).scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a PostgreSQL URL: postgresql://user:password@host/db")
        return value

    @field_validator(
        "cxr_allowed_channels",
        "cxr_admins",
        "cxr_reviewers",
        "cxr_owned_versions",
        "slack_file_hosts",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("slack_file_hosts")
    @classmethod
    def _file_hosts(cls, value: list[str]) -> list[str]:
        hosts = [host.strip().lower() for host in value if host.strip()]
        for host in hosts:
            if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", host):
                raise ValueError(f"{host!r} is not a host name (no scheme, port or path)")
        return hosts

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("cxr_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("cxr_project_arn", "cxr_project_version_arn")
    @classmethod
    def _arn(cls, value: str | None) -> str | None:
        if value and not value.startswith("arn:aws"):
            raise ValueError("must be an ARN (arn:aws:rekognition:…)")
        return value or None

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        from bot.core.fleet.arns import same_project

        problems: list[str] = []
        if (self.slack_app_token or self.slack_signing_secret) and not self.slack_bot_token:
            problems.append(
                "SLACK_BOT_TOKEN: missing (needed with SLACK_APP_TOKEN or SLACK_SIGNING_SECRET)"
            )
        if self.slack_app_token and not self.slack_app_token.get_secret_value().startswith("xapp-"):
            problems.append("SLACK_APP_TOKEN: must be an app-level token starting with xapp-")
        if self.cxr_project_version_arn and not self.cxr_project_arn:
            problems.append("CXR_PROJECT_ARN: missing (needed with CXR_PROJECT_VERSION_ARN)")
        if self.uses_rekognition and not self.aws_region:
            problems.append("AWS_REGION: missing (needed with CXR_PROJECT_ARN)")
        if (
            self.cxr_project_arn
            and self.cxr_project_version_arn
            and not same_project(self.cxr_project_version_arn, self.cxr_project_arn)
        ):
            problems.append("CXR_PROJECT_VERSION_ARN: is not a version of CXR_PROJECT_ARN")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # --- Derived ----------------------------------------------------------------------------
    @property
    def transport(self) -> Literal["socket", "http", "shell"]:
        if self.slack_app_token:
            return "socket"
        if self.slack_signing_secret:
            return "http"
        return "shell"

    @property
    def uses_rekognition(self) -> bool:
        return bool(self.cxr_project_arn)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.cxr_max_upload_mb * 1024 * 1024)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.cxr_timezone)


def load_settings(**overrides: object) -> Settings:
    """Build the settings, or raise `SettingsError` naming every bad value in one message.

    Field errors stop pydantic before the cross-field checks run, so on failure the settings
    are built once more with the bad fields at their defaults to collect those checks too.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        errors = list(exc.errors())
    fields = Settings.model_fields
    bad = {str(e["loc"][0]).lower() for e in errors if e.get("loc")}
    stand_ins = {
        name: fields[name].get_default(call_default_factory=True) for name in bad if name in fields
    }
    if not stand_ins:  # only cross-field problems: the first pass found them all
        raise SettingsError(format_errors(errors))
    try:
        Settings(**{**overrides, **stand_ins})  # type: ignore[arg-type]
    except ValidationError as again:
        errors += [e for e in again.errors() if not e.get("loc")]
    raise SettingsError(format_errors(errors))


def format_errors(errors: list) -> str:
    lines = ["cxr-bot cannot start: fix these settings (environment variables or .env):"]
    for error in errors:
        loc = error.get("loc") or ()
        if loc:
            name = str(loc[0]).upper()
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"  - {name}: {message}")
        else:
            for problem in error["msg"].removeprefix("Value error, ").split("; "):
                lines.append(f"  - {problem}")
    return "\n".join(lines)
