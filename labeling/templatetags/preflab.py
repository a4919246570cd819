from django import template
from django.utils.safestring import SafeString, mark_safe

from labeling.models import Choice, Vote
from labeling.rendering import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(source: str) -> SafeString:
    # Safe to mark: render_markdown escapes raw HTML and sanitises its own output.
    return mark_safe(render_markdown(source))


@register.filter(name="as_seen")
def as_seen(vote: Vote) -> str:
    """A vote as its annotator saw it: left or right, not the stored A or B."""
    if vote.choice in (Choice.A, Choice.B):
        side = "Left" if vote.choice == vote.left_side else "Right"
        strength = f" ({vote.get_strength_display().lower()})" if vote.strength else ""
        return f"{side} is better{strength}"
    return str(vote.get_choice_display())
