"""Best of K: the judge picks the best and the worst of one prompt's K samples.

Registered into training.pairing by JudgingConfig.ready() (training never imports judging).
Every kind is asked the same way: a round robin of the K(K-1)/2 pairs, each judged in both
orders exactly as judging jobs ask a comparison (judging.services.combine). A consistent
verdict gives the winner one win; a tie, an inconsistent pair or an unparseable answer gives
each side half. For a reward-model judge the verdicts follow the rewards, so the wins rank the
candidates by reward. Best: most wins; worst: fewest (among equal counts, the first sample);
when the best and the worst tie on wins (every candidate has the same count) the prompt has
no selection and the sampling job drops it as a judge tie. A call that failed (or one not
made because PREFLAB_JUDGE_JOB_SECONDS had passed) drops the prompt as a judge error.
"""

from __future__ import annotations

import time
from itertools import combinations

from django.conf import settings

from judging.kinds import Pair, Verdict, build
from judging.models import Outcome
from judging.services import combine
from labeling.models import Choice, Judge, Prompt
from training.pairing import Candidates, Selection


def _prompt_text(prompt: Prompt) -> str:
    """As judging.services.prompt_text shows a comparison's prompt."""
    if prompt.messages:
        return "\n\n".join(
            f"{message.get('role', 'user')}: {message.get('content', '')}"
            for message in prompt.messages
        )
    return prompt.text


def select_best_worst(judge: Judge, items: list[Candidates]) -> list[Selection]:
    if not items:
        return []
    kind = build(judge)
    deadline = time.monotonic() + settings.PREFLAB_JUDGE_JOB_SECONDS
    guidelines = judge.project.guidelines
    selections = []
    try:
        for item in items:
            text = _prompt_text(item.prompt)
            metadata = dict(item.prompt.metadata or {})
            matches = list(combinations(range(len(item.texts)), 2))
            pairs = []
            for i, j in matches:
                a, b = item.texts[i], item.texts[j]
                pairs += [
                    Pair(text, a, b, guidelines, metadata),
                    Pair(text, b, a, guidelines, metadata),
                ]
            verdicts = kind.judge(pairs, deadline)
            selections.append(_select(judge, item, matches, verdicts))
    finally:
        kind.close()
    return selections


def _select(
    judge: Judge, item: Candidates, matches: list[tuple[int, int]], verdicts: list[Verdict]
) -> Selection:
    wins = [0.0] * len(item.texts)
    outcomes = dict.fromkeys(Outcome.values, 0)
    calls = sum(v.calls for v in verdicts)
    tokens = sum(v.tokens for v in verdicts)
    for index, (i, j) in enumerate(matches):
        combined = combine(verdicts[2 * index], verdicts[2 * index + 1], judge.kind)
        outcomes[combined.outcome] += 1
        if combined.outcome == Outcome.ERROR:
            return Selection(None, None, wins, calls, tokens, error=combined.error[:500])
        if combined.outcome == Outcome.CONSISTENT and combined.choice == Choice.A:
            wins[i] += 1
        elif combined.outcome == Outcome.CONSISTENT and combined.choice == Choice.B:
            wins[j] += 1
        else:
            wins[i] += 0.5
            wins[j] += 0.5
    evidence = {"outcomes": {key: value for key, value in outcomes.items() if value}}
    top, bottom = max(wins), min(wins)
    if top == bottom:
        return Selection(None, None, wins, calls, tokens, evidence=evidence)
    return Selection(wins.index(top), wins.index(bottom), wins, calls, tokens, evidence=evidence)
