from django.apps import AppConfig


class JudgingConfig(AppConfig):
    name = "judging"
    verbose_name = "AI judges"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core.jobs import register
        from judging.agreement import order_stats
        from judging.best_of import select_best_worst
        from judging.services import judging_job_kind
        from labeling.quality.judges import register_order_stats
        from training.pairing import register_best_worst

        register(judging_job_kind())
        register_order_stats(order_stats)
        register_best_worst(select_best_worst)
