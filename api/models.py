"""API tokens: hashed, scoped, limited to chosen projects, revocable, optionally expiring.

The secret is shown once when the token is made; only its SHA-256 is stored. A plain (fast)
hash is right here: the secret is 256 random bits, so there is nothing to brute-force, and a
lookup by hash needs no per-row salt.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Scope(models.TextChoices):
    """What a token may do. Each endpoint needs exactly one scope (docs/api.md lists them)."""

    READ = "read", "read: list projects, snapshots, training runs and checkpoints"
    EXPORT = "export", "export: download snapshots, stream preferences, start snapshots"
    UPLOAD = "upload", "upload: import prompts, pairs and preferences"
    TRAIN = "train", "train: start and cancel training runs"


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for.")
    prefix = models.CharField(
        max_length=16, help_text="The secret's first characters, to recognise it; not secret."
    )
    secret_sha256 = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list, help_text="A list of Scope values.")
    projects = models.ManyToManyField("labeling.Project", related_name="api_tokens")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["user", "revoked_at"], name="api_token_user_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return not self.is_revoked and not self.is_expired

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
