import pytest

from evaluation import length_limit_share, length_summary


def test_share_of_responses_at_the_length_limit():
    assert length_limit_share([10, 256, 300, 255], 256) == 0.5


def test_length_summary_per_model_in_order_of_first_appearance():
    summary = length_summary(
        ["new", "old", "new", "old", "new"], [256, 100, 128, 50, 256], limit=256
    )
    assert list(summary) == ["new", "old"]
    assert summary["new"].n == 3
    assert summary["new"].mean_length == pytest.approx(640 / 3)
    assert summary["new"].at_limit_share == pytest.approx(2 / 3)
    assert (summary["old"].n, summary["old"].mean_length, summary["old"].at_limit_share) == (
        2,
        75.0,
        0.0,
    )


def test_length_summary_without_a_limit_has_no_share():
    assert length_summary(["m"], [3])["m"].at_limit_share is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: length_limit_share([], 10), "empty"),
        (lambda: length_limit_share([1], 0), "positive"),
        (lambda: length_summary(["a", "b"], [1]), "models has 2"),
        (lambda: length_summary(["a"], [-1]), "at least 0"),
        (lambda: length_summary([], []), "empty"),
    ],
)
def test_bad_lengths_raise_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
