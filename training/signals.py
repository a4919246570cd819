from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from labeling.models import Project
from training.services import register_base_model


@receiver(post_save, sender=Project, dispatch_uid="training.base_checkpoint")
def keep_base_checkpoint(sender: type[Project], instance: Project, **kwargs: Any) -> None:
    """A project's base model is a checkpoint runs can start from and rounds can sample."""
    if instance.base_model:
        register_base_model(instance, instance.base_model, name=f"base: {instance.base_model}")
