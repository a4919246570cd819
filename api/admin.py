from django.contrib import admin

from api.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "prefix",
        "user",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")
    # Tokens are made by their owners in the token pages; the admin may only look and revoke.
    readonly_fields = ("user", "prefix", "secret_sha256", "scopes", "created_at", "last_used_at")
    filter_horizontal = ("projects",)

    def has_add_permission(self, request: object) -> bool:
        return False
