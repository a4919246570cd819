from django.apps import AppConfig


class LabelingConfig(AppConfig):
    name = "labeling"
    verbose_name = "Labeling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core.jobs import register
        from labeling.quality.jobs import quality_job_kind
        from labeling.snapshots import snapshot_job_kind

        register(snapshot_job_kind())
        register(quality_job_kind())
