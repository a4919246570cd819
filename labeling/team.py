"""Team management inside the app: a project admin creates, invites and removes members.

- Create: a new user with a generated password, shown once to the admin (only its hash is
  stored, by Django's password hashers).
- Invite: a one-time link. Only the SHA-256 of its token is stored (the token is 256 random
  bits, so a plain hash suffices, as for API tokens); it expires, carries a role, and is used
  once: the claim is a conditional UPDATE, so of two people opening it one wins.
- Bulk: a CSV `username,role[,email]`, all or nothing, errors named by line.
- Remove: the membership goes (the user's votes stay, attributed to them). A user left with no
  project at all, who is not staff, is also deactivated (is_active False: cannot log in, API
  tokens stop working). Nothing here reactivates an account: a project admin must not undo a
  deactivation that staff made, and the two look alike, so staff reactivate in the admin.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from labeling.models import Invite, Membership, Project, Role

logger = logging.getLogger(__name__)

INVITE_DAYS = 7
MAX_INVITE_DAYS = 90
MAX_BULK_ROWS = 1000
USERNAME_RE = re.compile(r"^[\w.@+-]{1,150}$")


class TeamError(ValueError):
    """Nothing was changed; `errors` lists every problem (line-numbered for a CSV)."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


def generate_password() -> str:
    # 16 URL-safe characters: about 96 bits, well past every password validator.
    return secrets.token_urlsafe(12)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedMember:
    username: str
    role: str
    password: str  # shown once, never stored in clear


def _check_new(username: str, role: str, email: str) -> list[str]:
    problems = []
    if not USERNAME_RE.match(username):
        problems.append(
            f"username {username!r} is not valid (letters, digits and @.+-_ only, 1-150)"
        )
    elif User.objects.filter(username__iexact=username).exists():
        problems.append(f"a user named {username!r} already exists")
    if role not in Role.values:
        problems.append(f"role {role!r} is not one of {', '.join(Role.values)}")
    if email:
        try:
            validate_email(email)
        except ValidationError:
            problems.append(f"email {email!r} is not a valid address")
    return problems


def _create(project: Project, username: str, role: str, email: str) -> CreatedMember:
    password = generate_password()
    user = User.objects.create_user(username=username, email=email, password=password)
    Membership.objects.create(project=project, user=user, role=role)
    return CreatedMember(username, role, password)


def create_member(project: Project, username: str, role: str, email: str = "") -> CreatedMember:
    """Create a user with a generated password and make them a member with this role."""
    username, email = username.strip(), email.strip()
    problems = _check_new(username, role, email)
    if problems:
        raise TeamError(problems)
    with transaction.atomic():
        created = _create(project, username, role, email)
    logger.info("project %s: created member %s as %s", project.pk, username, role)
    return created


def bulk_create_members(project: Project, data: bytes) -> list[CreatedMember]:
    """Create every user of a CSV `username,role[,email]` (header row optional), or none.

    Every bad line is named in the error: a bad username or role, a user that exists, a
    username repeated in the file, a bad email, a wrong number of cells."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TeamError([f"line {line}: the file is not valid UTF-8"]) from None
    rows: list[tuple[str, str, str]] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            cells = [cell.strip() for cell in cells]
            if line == 1 and [c.lower() for c in cells[:2]] == ["username", "role"]:
                continue  # the header row
            if len(cells) not in (2, 3):
                errors.append(
                    f"line {line}: expected username,role[,email], got {len(cells)} cells"
                )
                continue
            username, role = cells[0], cells[1].lower()
            email = cells[2] if len(cells) == 3 else ""
            problems = _check_new(username, role, email)
            if username.lower() in seen:
                problems.append(f"repeats the username of line {seen[username.lower()]}")
            seen.setdefault(username.lower(), line)
            errors.extend(f"line {line}: {problem}" for problem in problems)
            rows.append((username, role, email))
            if len(rows) > MAX_BULK_ROWS:
                raise TeamError([f"the file has more than {MAX_BULK_ROWS} rows (split it up)"])
    except csv.Error as exc:
        errors.append(f"line {reader.line_num}: CSV cannot be read: {exc}")
    if errors:
        raise TeamError(errors)
    if not rows:
        raise TeamError(["the file holds no rows"])
    with transaction.atomic():
        created = [_create(project, *row) for row in rows]
    logger.info("project %s: bulk-created %s members", project.pk, len(created))
    return created


@dataclass(frozen=True)
class NewInvite:
    invite: Invite
    token: str  # goes in the link, shown once; only its hash is stored


def create_invite(
    project: Project, role: str, created_by: User, days: int = INVITE_DAYS
) -> NewInvite:
    if role not in Role.values:
        raise TeamError([f"role {role!r} is not one of {', '.join(Role.values)}"])
    if not 1 <= days <= MAX_INVITE_DAYS:
        raise TeamError([f"an invite lasts 1 to {MAX_INVITE_DAYS} days"])
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        invite = Invite.objects.create(
            project=project,
            role=role,
            token_hash=hash_token(token),
            created_by=created_by,
            expires_at=timezone.now() + timedelta(days=days),
        )
    return NewInvite(invite, token)


def find_invite(token: str) -> Invite | None:
    """The unused, unexpired invite behind a token, or None (all alike to the visitor)."""
    return (
        Invite.objects.select_related("project")
        .filter(token_hash=hash_token(token), used_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )


def accept_invite(token: str, user: User) -> Membership:
    """Use the invite (once) to make `user` a member with its role.

    An existing member keeps the higher of their role and the invite's."""
    now = timezone.now()
    with transaction.atomic():
        invite = find_invite(token)
        if invite is None:
            raise TeamError(["this invite link is not valid, has expired or was already used"])
        claimed = Invite.objects.filter(id=invite.pk, used_at__isnull=True).update(
            used_by=user, used_at=now
        )
        if not claimed:
            raise TeamError(["this invite link was already used"])
        rank = {Role.ANNOTATOR: 0, Role.REVIEWER: 1, Role.ADMIN: 2}
        membership = Membership.objects.filter(project=invite.project, user=user).first()
        if membership is None:
            membership = Membership.objects.create(
                project=invite.project, user=user, role=invite.role
            )
        elif rank[Role(invite.role)] > rank[Role(membership.role)]:
            membership.role = invite.role
            membership.save(update_fields=["role"])
    logger.info("invite %s used by user %s", invite.pk, user.pk)
    return membership


def sign_up_with_invite(token: str, username: str, password: str) -> tuple[User, Membership]:
    """Create an account from an invite link and use the invite, in one transaction."""
    with transaction.atomic():
        if find_invite(token) is None:
            raise TeamError(["this invite link is not valid, has expired or was already used"])
        if User.objects.filter(username__iexact=username).exists():
            raise TeamError([f"a user named {username!r} already exists"])
        user = User.objects.create_user(username=username, password=password)
        membership = accept_invite(token, user)
    return user, membership


def remove_member(project: Project, member: Membership, by: User) -> bool:
    """Remove a membership; deactivate the user when no project is left to them.

    Refuses to remove the last admin (the project would have no one to manage it) and
    removing oneself. Returns whether the user was deactivated."""
    if member.user_id == by.pk:
        raise TeamError(["you cannot remove yourself"])
    with transaction.atomic():
        if (
            member.role == Role.ADMIN
            and not Membership.objects.filter(project=project, role=Role.ADMIN)
            .exclude(id=member.pk)
            .exists()
        ):
            raise TeamError(["the project's last admin cannot be removed"])
        member.delete()
        user = member.user
        deactivate = not user.is_staff and not Membership.objects.filter(user=user).exists()
        if deactivate:
            User.objects.filter(id=user.pk).update(is_active=False)
    logger.info("project %s: removed user %s (deactivated: %s)", project.pk, user.pk, deactivate)
    return deactivate
