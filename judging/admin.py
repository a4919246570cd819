from django.contrib import admin

from judging.models import JudgeResult, JudgingJob


@admin.register(JudgingJob)
class JudgingJobAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "judge", "scope", "status", "done", "total", "created_at")
    list_filter = ("status", "scope")
    readonly_fields = ("traceback", "log_tail", "error")


@admin.register(JudgeResult)
class JudgeResultAdmin(admin.ModelAdmin):
    list_display = ("id", "judge", "comparison", "judge_version", "outcome", "choice", "margin")
    list_filter = ("outcome",)
