"""manifest.yml: valid against Slack's manifest schema (v1) and complete for what the bot does.

The schema below restates, for the keys this manifest uses, the constraints of Slack's published
schema (slackapi/manifest-schema, `schemas/manifest.schema.1.0.0.json`): required keys, lengths,
patterns, and no unknown properties anywhere.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

MANIFEST = Path(__file__).resolve().parent.parent / "manifest.yml"

_SCOPES = {"type": "array", "items": {"type": "string", "maxLength": 50}, "maxItems": 255}
_URL = {"type": "string", "pattern": r"^https?:\/\/", "maxLength": 3500}

SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["display_information"],
    "additionalProperties": False,
    "properties": {
        "_metadata": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                k: {"type": "integer"}
                for k in ("schema_version", "min_version", "major_version", "minor_version")
            },
        },
        "display_information": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 35},
                "description": {"type": "string", "minLength": 1, "maxLength": 140},
                "background_color": {"type": "string", "minLength": 4, "maxLength": 7},
                "long_description": {"type": "string", "minLength": 175, "maxLength": 4000},
            },
        },
        "features": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "app_home": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        k: {"type": "boolean"}
                        for k in (
                            "home_tab_enabled",
                            "messages_tab_enabled",
                            "messages_tab_read_only_enabled",
                        )
                    },
                },
                "bot_user": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["display_name"],
                    "properties": {
                        "display_name": {"type": "string", "minLength": 1, "maxLength": 80},
                        "always_online": {"type": "boolean"},
                    },
                },
                "slash_commands": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 50,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["command", "description"],
                        "properties": {
                            "command": {
                                "type": "string",
                                "minLength": 2,
                                "maxLength": 32,
                                "pattern": r"^\/",
                            },
                            "url": _URL,
                            "description": {"type": "string", "minLength": 1, "maxLength": 2000},
                            "usage_hint": {"type": "string", "minLength": 1, "maxLength": 1000},
                            "should_escape": {"type": "boolean"},
                        },
                    },
                },
            },
        },
        "oauth_config": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "redirect_urls": {"type": "array", "items": {"type": "string"}},
                "scopes": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        k: _SCOPES for k in ("user", "bot", "user_optional", "bot_optional")
                    },
                },
                "token_management_enabled": {"type": "boolean"},
                "pkce_enabled": {"type": "boolean"},
            },
        },
        "settings": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "event_subscriptions": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "request_url": _URL,
                        "user_events": {**_SCOPES, "maxItems": 100, "uniqueItems": True},
                        "bot_events": {**_SCOPES, "maxItems": 100, "uniqueItems": True},
                    },
                },
                "interactivity": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["is_enabled"],
                    "properties": {
                        "is_enabled": {"type": "boolean"},
                        "request_url": _URL,
                        "message_menu_options_url": _URL,
                    },
                },
                "org_deploy_enabled": {"type": "boolean"},
                "socket_mode_enabled": {"type": "boolean"},
                "token_rotation_enabled": {"type": "boolean"},
            },
        },
    },
}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def test_manifest_is_valid_against_the_schema(manifest):
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(manifest, SCHEMA)


def test_schema_rejects_what_slack_rejects(manifest):
    broken = {**manifest, "display_information": {"name": "x" * 36}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**manifest, "unknown_key": True}, SCHEMA)


def test_manifest_has_what_the_bot_uses(manifest):
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {
        "chat:write",
        "files:read",
        "files:write",
        "reactions:write",
        "channels:history",
        "groups:history",
        "im:history",
        "mpim:history",
        "commands",
        "usergroups:read",
        "im:write",
    } <= scopes
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == {
        "message.channels",
        "message.groups",
        "message.im",
        "message.mpim",
    }
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/cxr"]
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
