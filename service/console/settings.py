"""What the console is configured with (``python -m service.server`` flags of the console group).

``--review_teams_file`` says who may review which flow definition's human loops on the *Human
review* page: ``{"teams": {"<team name or full WorkteamArn>": ["<access key id>", ...]}}``. A flow's
``WorkteamArn`` (``arn:aws:sagemaker:REGION:ACCOUNT:workteam/private-crowd/moderators``) names its
team by the ARN itself or by its last path segment (``moderators``); without the file every
console user reviews every flow. ``ReviewTeams.load`` refuses a file it cannot read whole, with a
ValueError that names the problem, so that the server does not start with half a configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from service.preflight import is_allowed

__all__ = ["ConsoleSettings", "ReviewTeams", "console_settings", "team_name"]

_LOGGER = logging.getLogger(__name__)


def team_name(workteam_arn: str) -> str:
    """The team a WorkteamArn names: its last path segment (``.../workteam/private-crowd/mods``
    -> ``mods``)."""
    return workteam_arn.rstrip("/").rpartition("/")[2]


@dataclass(frozen=True)
class ReviewTeams:
    """The console users of each review team (``--review_teams_file``): by team name or by the
    full WorkteamArn."""

    teams: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: object, source: str = "--review_teams_file") -> ReviewTeams:
        """The teams of a parsed file; ValueError, naming ``source`` and the problem, for anything
        but ``{"teams": {"NAME or ARN": ["KEY ID", ...]}}``."""
        if not isinstance(document, dict) or not isinstance(document.get("teams"), dict):
            raise ValueError(
                f'{source} must be a JSON object {{"teams": {{"<team name or WorkteamArn>": '
                '["<access key id>", ...]}}}}'
            )
        unknown = sorted(set(document) - {"teams"})
        if unknown:
            raise ValueError(f"{source} has unknown key(s) {', '.join(map(repr, unknown))}")
        teams: dict[str, frozenset[str]] = {}
        for name, members in document["teams"].items():
            if not name.strip() or name != name.strip():
                raise ValueError(f"{source}: the team name {name!r} is empty or padded")
            if not isinstance(members, list) or not all(
                isinstance(member, str) and member.strip() for member in members
            ):
                raise ValueError(
                    f"{source}: the members of team {name!r} must be a list of access key ids"
                )
            teams[name] = frozenset(member.strip() for member in members)
        return cls(teams)

    @classmethod
    def load(cls, path: str) -> ReviewTeams:
        """The teams of the file at ``path``; ValueError if it cannot be read or is malformed."""
        source = f"--review_teams_file {path}"
        try:
            with open(path, encoding="utf-8") as file:
                document = json.load(file)
        except OSError as exc:
            raise ValueError(f"{source} cannot be read: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ValueError(f"{source} is not JSON: {exc}") from None
        return cls.from_document(document, source)

    def members(self, workteam_arn: str) -> frozenset[str]:
        """The users of the team ``workteam_arn`` names (by the ARN, else by its team name);
        nobody for a team the file does not list."""
        found = self.teams.get(workteam_arn)
        if found is None:
            found = self.teams.get(team_name(workteam_arn), frozenset())
        return found

    def may_review(self, user: str, workteam_arn: str) -> bool:
        return user in self.members(workteam_arn)


@dataclass(frozen=True)
class ConsoleSettings:
    """Where the console writes, its caches and limits, and how its sessions behave."""

    storage_bucket: str
    storage_prefix: str  # without a trailing slash; "" for the bucket's root
    cache_dir: str
    cache_bytes: int = 256 * 1024 * 1024
    session_seconds: float = 12 * 3600
    secure_cookies: bool = False
    max_upload_images: int = 100
    max_upload_bytes: int = 15 * 1024 * 1024
    # Who reviews which flow's human loops; None (no --review_teams_file): every user, every flow.
    review_teams: ReviewTeams | None = None

    def key(self, *parts: str) -> str:
        """The S3 key of ``parts`` under the console's prefix."""
        return "/".join(part.strip("/") for part in (self.storage_prefix, *parts) if part)

    def uri(self, *parts: str) -> str:
        return f"s3://{self.storage_bucket}/{self.key(*parts)}"


def console_settings(
    args: argparse.Namespace, allowed: Collection[str] | None
) -> ConsoleSettings | None:
    """The console's settings from the server's flags; None with ``--no_console``, or when
    ``--console_storage`` is missing where it cannot be derived (every bucket allowed).

    ValueError when ``--console_storage`` lies outside ``--allowed_locations``, or when
    ``--review_teams_file`` cannot be read or is malformed.
    """
    if args.no_console:
        return None
    storage = args.console_storage
    if storage is None:
        if not allowed:
            _LOGGER.warning(
                "No console: with --allowed_locations='*' give --console_storage=BUCKET/PREFIX, "
                "where the console keeps uploads, job outputs and adapters"
            )
            return None
        storage = next(iter(allowed)).rstrip("/") + "/console"
    storage = storage.removeprefix("s3://").strip("/")
    bucket, _, prefix = storage.partition("/")
    if not bucket:
        raise ValueError(f"--console_storage {args.console_storage!r} names no bucket")
    if not is_allowed(bucket, f"{prefix}/" if prefix else "", allowed):
        raise ValueError(
            f"--console_storage s3://{storage} is outside --allowed_locations: the console could "
            "not read back what it writes there"
        )
    teams_file = getattr(args, "review_teams_file", None)
    review_teams = ReviewTeams.load(teams_file) if teams_file else None
    cache_dir = args.console_cache_dir or os.path.join(
        os.path.dirname(os.path.abspath(args.registry)), "thumbnails"
    )
    return ConsoleSettings(
        storage_bucket=bucket,
        storage_prefix=prefix,
        cache_dir=cache_dir,
        cache_bytes=args.console_cache_mb * 1024 * 1024,
        session_seconds=args.console_session_hours * 3600,
        secure_cookies=args.behind_tls,
        max_upload_images=args.max_upload_images,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        review_teams=review_teams,
    )
