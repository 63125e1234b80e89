"""The one ARN helper: Rekognition Custom Labels project, version and dataset ARNs.

The outer form (`arn:partition:service:region:account:resource`) is botocore's `ArnParser`;
the resource part is ours: `project/<name>/<ts>`, `project/<name>/version/<version>/<ts>`,
`project/<name>/dataset/<train|test>/<ts>`.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.utils import ArnParser, InvalidArnException

UNKNOWN_PROJECT = "custom-labels"  # CloudWatch's ProjectName when an ARN names none


@dataclass(frozen=True)
class RekognitionArn:
    region: str
    project: str  # the project's name ("" when the ARN names none)
    kind: str  # "project" | "version" | "dataset" | ""
    name: str  # the version's name, the dataset's type (TRAIN/TEST), or the project's name

    @classmethod
    def parse(cls, arn: str) -> RekognitionArn:
        try:
            parts = ArnParser().parse_arn(arn)
        except InvalidArnException:
            return cls("", "", "", arn.rsplit("/", 1)[-1])
        resource = parts["resource"].split("/")
        if resource[0] != "project" or len(resource) < 2:
            return cls(parts["region"], "", "", resource[-1])
        project = resource[1]
        if len(resource) >= 4 and resource[2] == "version":
            return cls(parts["region"], project, "version", resource[3])
        if len(resource) >= 4 and resource[2] == "dataset":
            return cls(parts["region"], project, "dataset", resource[3].upper())
        return cls(parts["region"], project, "project", project)


def project_name(arn: str) -> str:
    """The project's name in a project, version or dataset ARN (CloudWatch's ProjectName)."""
    return RekognitionArn.parse(arn).project or UNKNOWN_PROJECT


def version_name(arn: str) -> str:
    """The version's name in a version ARN (its last part for anything else)."""
    return RekognitionArn.parse(arn).name


def is_version_arn(text: str) -> bool:
    return RekognitionArn.parse(text).kind == "version" and text.startswith("arn:")


def dataset_type(arn: str) -> str:
    """TRAIN or TEST for a dataset ARN, "" for anything else."""
    parsed = RekognitionArn.parse(arn)
    return parsed.name if parsed.kind == "dataset" else ""


def same_project(version_arn: str, project_arn: str) -> bool:
    """Whether a version ARN is one of the project's (`project/<name>/<ts>`)."""
    version, project = RekognitionArn.parse(version_arn), RekognitionArn.parse(project_arn)
    return (
        version.kind == "version"
        and project.kind == "project"
        and version.project == project.project
        and version_arn.split(":")[:5] == project_arn.split(":")[:5]
    )
