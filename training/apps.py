from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core.jobs import register
        from training import signals  # noqa: F401 - connects the receivers
        from training.services import sampling_job_kind, training_job_kind

        register(training_job_kind())
        register(sampling_job_kind())
