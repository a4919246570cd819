"""Ranking sampling (issue 15 §1): K samples per prompt of a checkpoint become one ranking task
of a new round; identical samples are kept once and a prompt left with fewer than 3 distinct
ones makes no task; held-out prompts are never sampled."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from core.jobs import run_job
from labeling.importers import ImportKind, import_file
from labeling.models import (
    Completion,
    Project,
    Prompt,
    PromptSplit,
    Ranking,
    RankingTask,
    Role,
)
from labeling.rankings import TaskSpec, create_ranking_tasks
from labeling.services import add_member
from tests.conftest import make_user
from training.forms import SamplingForm
from training.models import Checkpoint, PairingMode, RunStatus, SamplingJob
from training.services import (
    RunRefused,
    _open_ranking_round,
    register_base_model,
    select_prompts,
    start_sampling,
)

GENERATION = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 16, "seed": 11}


@pytest.fixture
def project(db):
    project = Project.objects.create(name="Rank K", overlap=2)
    prompts = "\n".join(json.dumps({"prompt": f"Question {i}: say hi."}) for i in range(5))
    import_file(project, prompts.encode(), "prompts.jsonl", ImportKind.PROMPTS)
    return project


@pytest.mark.slow
def test_k_samples_of_each_prompt_open_as_one_ranking_task(project, tiny_model):
    held_out = Prompt.objects.filter(project=project).order_by("id").last()
    Prompt.objects.filter(pk=held_out.pk).update(split=PromptSplit.EVAL)
    base = register_base_model(project, str(tiny_model), "tiny-base")
    job = start_sampling(
        project, base, pairing=PairingMode.RANKING, samples_per_prompt=4, generation=GENERATION
    )
    run_job("sampling_job", job.pk)
    job = SamplingJob.objects.get(pk=job.pk)
    assert job.status == RunStatus.SUCCEEDED, job.error
    assert job.comparisons_created == 0 and not job.round.comparisons.exists()
    dropped = job.dropped_identical + job.dropped_empty + job.dropped_missing
    assert job.ranking_tasks_created + dropped == 4  # the held-out prompt is not sampled
    # 16 random bytes at temperature 1: four samples of a prompt never coincide.
    assert job.ranking_tasks_created == 4 and dropped == 0
    assert job.round.checkpoint == base
    tasks = list(RankingTask.objects.filter(round=job.round).prefetch_related("items__completion"))
    assert len(tasks) == 4
    assert held_out.pk not in {task.prompt_id for task in tasks}
    for task in tasks:
        assert task.size == 4 and task.votes_target == 2 and task.vote_count == 0
        items = list(task.items.all())
        assert [item.position for item in items] == [0, 1, 2, 3]
        completions = [item.completion for item in items]
        assert len({c.text.strip() for c in completions}) == 4
        for index, completion in enumerate(completions):
            assert completion.prompt_id == task.prompt_id
            assert completion.checkpoint == base and completion.model_name == "tiny-base"
            params = completion.generation_params
            assert params["temperature"] == 1.0 and params["seed"] is not None
            assert params["sample_of"] == {"k": 4, "index": index}
    # Only the tasks' samples are stored; the held-out prompt has none.
    assert Completion.objects.filter(prompt__project=project).count() == 16
    assert not Completion.objects.filter(prompt=held_out).exists()


def rows_of(prompt, texts):
    return [{"id": prompt.id, "completion": text, "seed": 0} for text in texts]


def ranking_job(project, checkpoint, *, keep_empty):
    return SamplingJob.objects.create(
        project=project,
        checkpoint=checkpoint,
        pairing=PairingMode.RANKING,
        samples_per_prompt=4,
        keep_empty=keep_empty,
        generation={"seed": 0},
    )


@pytest.mark.parametrize("keep_empty", [True, False])
def test_identical_samples_are_kept_once_and_too_few_drop_the_prompt(project, tmp_path, keep_empty):
    for index in range(5, 8):
        Prompt.objects.create(project=project, text=f"Extra {index}")
    base = register_base_model(project, str(tmp_path), "base")
    prompts = list(Prompt.objects.filter(project=project).order_by("id"))
    texts = [
        ["one", "two", "three", "four"],  # a task of 4
        ["one", "one", "two", "three"],  # a task of 3: the second "one" is left out
        ["one", "one", "two", "two"],  # 2 distinct: identical, no task
        [" one", "one\n", "two", "thr\x00ee"],  # spaces around and NUL do not make a new answer
        ["", "one", "two", "three"],  # a task of 4 keeping the empty one, of 3 without it
        ["", "", "one", "two"],  # 3 distinct with the empty one; 2 without it: empty
        ["one", "two"],  # the engine returned 2: missing
        ["x", "x", "x", "x"],  # identical
    ]
    rows = [row for prompt, t in zip(prompts, texts, strict=True) for row in rows_of(prompt, t)]
    job = ranking_job(project, base, keep_empty=keep_empty)
    created, counts, round_ = _open_ranking_round(job, prompts, rows)
    assert counts == {
        "dropped_missing": 1,
        "dropped_identical": 2,
        "dropped_empty": 0 if keep_empty else 1,
    }
    tasks = {task.prompt_id: task for task in RankingTask.objects.filter(round=round_)}
    assert created == len(tasks) == (5 if keep_empty else 4)
    expected = {
        0: ["one", "two", "three", "four"],
        1: ["one", "two", "three"],
        3: [" one", "two", "three"],
        4: ["", "one", "two", "three"] if keep_empty else ["one", "two", "three"],
    }
    if keep_empty:
        expected[5] = ["", "one", "two"]
    for index, want in expected.items():
        task = tasks.pop(prompts[index].id)
        assert [item.completion.text for item in task.items.all()] == want
        assert task.size == len(want)
    assert not tasks
    assert round_.checkpoint == base and round_.source.startswith(f"sampling job {job.pk}")
    # The dropped prompts stored no completion.
    dropped = [prompts[i] for i in (2, 6, 7)] + ([] if keep_empty else [prompts[5]])
    assert not Completion.objects.filter(prompt__in=dropped).exists()


def test_a_prompt_with_no_task_at_all_opens_no_round(project, tmp_path):
    base = register_base_model(project, str(tmp_path), "base")
    prompts = list(Prompt.objects.filter(project=project).order_by("id"))[:2]
    rows = rows_of(prompts[0], ["a", "a", "a"]) + rows_of(prompts[1], ["b", "b", "c"])
    created, counts, round_ = _open_ranking_round(
        ranking_job(project, base, keep_empty=True), prompts, rows
    )
    assert (created, counts["dropped_identical"], round_) == (0, 2, None)
    assert not project.rounds.exists() and not Completion.objects.exists()


def test_ranking_sampling_refuses_k_outside_3_to_8_naming_the_field(project, tmp_path):
    base = register_base_model(project, str(tmp_path), "base")
    for k in (2, 9, 0, True):
        with pytest.raises(
            RunRefused, match="samples_per_prompt must be a whole number from 3 to 8"
        ) as refused:
            start_sampling(project, base, pairing=PairingMode.RANKING, samples_per_prompt=k)
        assert refused.value.key == "samples_per_prompt"
    assert not SamplingJob.objects.exists()
    # K defaults to 4, and no judge is needed (nor kept).
    job = start_sampling(project, base, pairing=PairingMode.RANKING)
    assert (job.samples_per_prompt, job.judge, job.pairing) == (4, None, "ranking")


def test_held_out_prompts_only_refuse_ranking_sampling(project, tmp_path):
    Prompt.objects.filter(project=project).update(split=PromptSplit.EVAL)
    base = register_base_model(project, str(tmp_path), "base")
    with pytest.raises(RunRefused, match="no training prompts"):
        start_sampling(project, base, pairing=PairingMode.RANKING, samples_per_prompt=4)


@pytest.fixture
def admin_client(client, project):
    admin = make_user("ranking_admin")
    add_member(project, admin, Role.ADMIN)
    client.force_login(admin)
    return client


def form_data(**values):
    data = {
        "selection": "all",
        "pairing": "ranking",
        "temperature": 1.0,
        "top_p": 1.0,
        "max_new_tokens": 16,
        "seed": 0,
        "keep_empty": "on",
    }
    data.update(values)
    return data


def test_the_form_asks_for_k_for_ranking_and_queues_the_job(admin_client, project):
    checkpoint = Checkpoint.objects.create(project=project, name="ckpt", path="/models/ckpt")
    url = reverse("training:sampling_create", args=[project.id, checkpoint.id])
    for k, message in ((9, "less than or equal to 8"), (2, "greater than or equal to 3")):
        response = admin_client.post(url, form_data(samples_per_prompt=k))
        assert response.status_code == 400
        assert message in response.context["form"].errors["samples_per_prompt"][0]
        assert "Samples per prompt (K)" in response.content.decode()
    response = admin_client.post(url, form_data())
    assert response.status_code == 400
    assert "Say how many samples" in response.context["form"].errors["samples_per_prompt"][0]
    assert not SamplingJob.objects.exists()
    response = admin_client.post(url, form_data(samples_per_prompt=5))
    job = SamplingJob.objects.get()
    assert response.status_code == 303
    assert response["Location"] == reverse("training:sampling_job", args=[project.id, job.id])
    assert (job.pairing, job.samples_per_prompt, job.judge, job.checkpoint) == (
        "ranking",
        5,
        None,
        checkpoint,
    )
    page = admin_client.get(response["Location"]).content.decode()
    assert "K samples per prompt as one ranking task: K = 5" in page
    assert "Ranking tasks created" in page


def test_the_form_shows_k_for_ranking_as_for_best_worst(project):
    html = SamplingForm(project).as_p()
    assert 'value="ranking"' in html
    form = SamplingForm(project, form_data(samples_per_prompt=3))
    assert form.is_valid(), form.errors
    from django.template.loader import render_to_string

    fields = render_to_string("training/_sampling_fields.html", {"form": SamplingForm(project)})
    k_field = fields.split('data-show-values="best_worst ranking"')
    assert len(k_field) == 2 and 'name="samples_per_prompt"' in k_field[1].split("</div>")[0]


def test_the_pipeline_and_job_page_count_ranking_tasks(admin_client, project):
    checkpoint = Checkpoint.objects.create(project=project, name="ckpt", path="/models/ckpt")
    job = SamplingJob.objects.create(
        project=project,
        checkpoint=checkpoint,
        pairing=PairingMode.RANKING,
        samples_per_prompt=4,
        status=RunStatus.SUCCEEDED,
        ranking_tasks_created=3,
        dropped_identical=1,
    )
    pipeline = admin_client.get(reverse("training:pipeline", args=[project.id])).content.decode()
    assert "3 ranking tasks" in pipeline
    page = admin_client.get(reverse("training:sampling_job", args=[project.id, job.id]))
    text = page.content.decode()
    assert '<dd data-testid="ranking-tasks">3</dd>' in text
    assert "Prompts dropped: fewer than 3 distinct samples</dt><dd>1</dd>" in text


def test_fewest_votes_selection_counts_rankings_as_judgments(project):
    """A prompt whose ranking task was ranked has been judged: fewest_votes picks the prompts
    nobody judged first, a vote and a ranking counting one each."""
    prompts = list(Prompt.objects.filter(project=project).order_by("id"))
    ranked = prompts[0]
    round_ = project.rounds.create(number=2, source="test")
    completions = [Completion.objects.create(prompt=ranked, text=f"r{i}") for i in range(3)]
    (task,) = create_ranking_tasks(round_, [TaskSpec(ranked, completions, votes_target=2)])
    for name in ("sel_a", "sel_b"):
        Ranking.objects.create(task=task, annotator=make_user(name), ranking=[0, 1, 2])
    base = register_base_model(project, "/models/base")
    job = start_sampling(project, base, selection="fewest_votes", prompt_limit=4)
    picked = select_prompts(SamplingJob.objects.get(pk=job.pk))
    assert ranked not in picked and len(picked) == 4
