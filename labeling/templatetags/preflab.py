from django import template
from django.utils.safestring import SafeString, mark_safe

from labeling.rendering import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(source: str) -> SafeString:
    # Safe to mark: render_markdown escapes raw HTML and sanitises its own output.
    return mark_safe(render_markdown(source))
