"""The reward-model judge with a tiny sequence-classification model built in the test."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from judging.models import JudgeResult, Outcome  # noqa: E402
from judging.services import add_judge, run_judging  # noqa: E402
from labeling.models import Choice, JobStatus, Vote, VoteSource  # noqa: E402


def build_tiny_reward_model(out, seed: int = 0):
    from training.engine.tiny import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=(len(tokenizer) + 63) // 64 * 64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.LlamaForSequenceClassification(config)
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def reward_model(judging_settings):
    return build_tiny_reward_model(judging_settings.PREFLAB_JUDGE_MODELS_DIR / "tiny-rm")


def plain_reward(path, text: str) -> float:
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.inference_mode():
        return float(model(**tokenizer([text], return_tensors="pt")).logits[0, 0])


def test_pointwise_rewards_decide_both_orders_the_same_way(make_project, reward_model):
    project = make_project(pairs=4)
    judge = add_judge(
        project, "rm", "reward_model", {"model": "tiny-rm", "batch_size": 3, "device": "cpu"}
    )
    job = run_judging(judge)

    assert job.status == JobStatus.SUCCEEDED and job.done == 4
    results = list(
        JudgeResult.objects.select_related("comparison__prompt", "comparison__completion_a")
    )
    assert len(results) == 4
    assert all(result.outcome == Outcome.CONSISTENT for result in results)
    first = results[0]
    a_text = f"{first.comparison.prompt.text}\n{first.comparison.completion_a.text}"
    # The stored reward is what transformers gives for that text in a plain call.
    assert first.output_ab["reward_first"] == pytest.approx(
        plain_reward(reward_model, a_text), abs=1e-4
    )
    assert first.output_ba["reward_second"] == pytest.approx(
        first.output_ab["reward_first"], abs=1e-4
    )
    difference = first.output_ab["reward_first"] - first.output_ab["reward_second"]
    assert first.margin == pytest.approx(abs(math.tanh(difference / 2)), abs=1e-6)
    votes = Vote.objects.filter(source=VoteSource.JUDGE)
    assert votes.count() == 4
    for vote in votes:
        result = next(r for r in results if r.comparison_id == vote.comparison_id)
        expected = (
            Choice.A
            if result.output_ab["reward_first"] > result.output_ab["reward_second"]
            else Choice.B
        )
        assert vote.choice == expected
        assert vote.judge_output["ab"] == result.output_ab


def test_pairwise_mode_asks_each_order_and_can_be_inconsistent(make_project, reward_model):
    project = make_project(pairs=6)
    judge = add_judge(project, "pair-rm", "reward_model", {"model": "tiny-rm", "mode": "pairwise"})
    job = run_judging(judge)

    assert job.done == 6 and job.consistent + job.inconsistent == 6
    for result in JudgeResult.objects.all():
        assert set(result.output_ab) == {"logit"} and set(result.output_ba) == {"logit"}
        assert result.output_ab["logit"] != result.output_ba["logit"]  # a different input
        consistent = (result.output_ab["logit"] > 0) == (result.output_ba["logit"] < 0)
        assert (result.outcome == Outcome.CONSISTENT) == consistent


@pytest.mark.parametrize("path", ["../outside", "/etc", "missing"])
def test_a_model_path_outside_the_models_directory_is_refused(make_project, reward_model, path):
    project = make_project(pairs=1)
    with pytest.raises(ValueError, match=r"config\.model"):
        add_judge(project, "bad", "reward_model", {"model": path})
