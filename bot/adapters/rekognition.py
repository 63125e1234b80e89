"""Rekognition Custom Labels as a `Classifier`: DetectCustomLabels on the serving version."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from PIL import Image

from bot.core.errors import (
    REFUSED_CREDENTIALS,
    ClassifierUnavailable,
    CorruptImage,
    ImageOutOfLimits,
    ModelNotRunning,
)
from bot.core.fleet.arns import project_name, version_name
from bot.core.imaging import encode_for_rekognition
from bot.core.labels import ModelInfo, Prediction

log = logging.getLogger(__name__)

# Custom Labels resizes internally; a 1024 px side keeps uploads small and fast.
UPLOAD_SIDE = 1024


def parse_version_arn(arn: str) -> tuple[str, str]:
    """(project name, version name) from arn:…:project/<name>/version/<version>/<ts>."""
    return project_name(arn), version_name(arn)


class RekognitionClassifier:
    """The production classifier. The serving version can change at run time (`/cxr start`)."""

    max_side = UPLOAD_SIDE

    def __init__(self, client: Any, version_arn: str) -> None:
        self._client = client
        self.version_arn = version_arn

    @property
    def model(self) -> ModelInfo:
        project, version = parse_version_arn(self.version_arn)
        return ModelInfo(kind="rekognition", name=project, version=version)

    async def classify(self, image: Image.Image) -> Prediction:
        data = await asyncio.to_thread(encode_for_rekognition, image)
        try:
            response = await asyncio.to_thread(
                self._client.detect_custom_labels,
                ProjectVersionArn=self.version_arn,
                Image={"Bytes": data},
                MinConfidence=0,
            )
        except ClientError as exc:
            raise self._explain(exc) from None
        except NoCredentialsError:
            raise ClassifierUnavailable(
                "I can't reach the Rekognition model: no AWS credentials are configured. "
                "An admin needs to set them up."
            ) from None
        except BotoCoreError as exc:
            log.warning("rekognition.unreachable", extra={"error": type(exc).__name__})
            raise ClassifierUnavailable(
                "I couldn't reach Amazon Rekognition just now. Please try again in a few minutes."
            ) from None
        return Prediction(scores={}, model=self.model, answer=self._answer(response))

    @staticmethod
    def _answer(response: dict[str, Any]) -> tuple[tuple[str, float], ...]:
        """The labels as Rekognition named them, confidences scaled from percent to 0..1.

        Nothing is inferred or dropped here: `bot.core.model_answer` decides whether the
        answer is one the bot can read (both labels, in range, summing to 100%).
        """
        labels = response.get("CustomLabels")
        if not isinstance(labels, list):
            return ()
        answer = []
        for item in labels:
            item = item if isinstance(item, dict) else {}
            confidence = item.get("Confidence")
            try:
                value = float(confidence) / 100  # type: ignore[arg-type]
            except (TypeError, ValueError):
                value = math.nan
            answer.append((str(item.get("Name", "")), value))
        return tuple(answer)

    def _explain(self, exc: ClientError) -> Exception:
        code = exc.response.get("Error", {}).get("Code", "")
        log.warning("rekognition.error", extra={"code": code})
        if code == "ResourceNotReadyException":
            return ModelNotRunning(
                f"The Rekognition model ({self.model.describe()}) isn't running right now. "
                "An admin can start it with `/cxr start`."
            )
        if code == "ResourceNotFoundException":
            return ModelNotRunning(
                f"The Rekognition model ({self.model.describe()}) doesn't exist any more. "
                "An admin should check `CXR_PROJECT_VERSION_ARN` or run `/cxr status`."
            )
        if code in REFUSED_CREDENTIALS:
            return ClassifierUnavailable(
                "Amazon Rekognition refused my credentials. An admin needs to check the bot's "
                "AWS access (it needs rekognition:DetectCustomLabels)."
            )
        if code in (
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "LimitExceededException",
        ):
            return ClassifierUnavailable(
                "The Rekognition model is busy (throttled) even after retries. Please post the "
                "image again in a minute; an admin may add inference units."
            )
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if status >= 500 or code.isdigit() or code in ("InternalServerError", "ServiceUnavailable"):
            return ClassifierUnavailable(
                "Amazon Rekognition isn't answering properly just now, even after retries. "
                "Please try again in a few minutes."
            )
        if code == "ImageTooLargeException":
            return ImageOutOfLimits("This image is too large for Rekognition even after resizing.")
        if code == "InvalidImageFormatException":
            return CorruptImage("Rekognition couldn't read this image's format.")
        return ClassifierUnavailable(
            "Amazon Rekognition had a problem with this image. Please try again in a few minutes."
        )
