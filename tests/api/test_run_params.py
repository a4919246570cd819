"""What a user may set on a run or a sampling job: one definition (training.params), the same
answer from the API, the UI forms and the service; paths and code execution never settable."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from labeling.models import Role
from tests.api.conftest import World, bearer
from tests.conftest import make_user
from training import services
from training.forms import RunForm, SamplingForm
from training.models import Checkpoint, SamplingJob, TrainingRun
from training.params import RUN_PARAMS, SAMPLING_PARAMS, SEED_MAX


def post_run(client: Client, world: World, hyperparameters: Any, raw: str | None = None) -> Any:
    body = {
        "snapshot_id": world.home.snapshot.id,
        "start_checkpoint_id": world.home.checkpoint.id,
        "hyperparameters": hyperparameters,
    }
    return client.post(
        f"/api/v1/projects/{world.home.project.id}/runs",
        raw if raw is not None else body,
        content_type="application/json",
        **bearer(world.token(["train", "read"])),
    )


def refused_key(response: Any) -> str:
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "run_refused"
    return str(error["details"]["key"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    "key, value",
    [
        ("trust_remote_code", True),
        ("cache_dir", "/srv/preflab/artifacts/snapshots/1"),
        ("reference_cache_dir", "/srv/preflab/artifacts/snapshots/1"),
        ("out_dir", "/tmp/elsewhere"),
        ("metrics_file", "/etc/cron.d/x"),
        ("data", "/etc/passwd"),
        ("model", "/tmp/evil-model"),
        ("reference_model", "/tmp/evil-model"),
        ("eval_data", "/etc/shadow"),
        ("lora_target_modules", ["q_proj"]),
    ],
)
def test_paths_and_code_execution_are_refused_naming_the_key(
    world: World, client: Client, key: str, value: Any
) -> None:
    runs_before = TrainingRun.objects.count()
    response = post_run(client, world, {key: value})
    assert refused_key(response) == key
    assert key in response.json()["error"]["message"]
    assert TrainingRun.objects.count() == runs_before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "hyperparameters, key",
    [
        ({"epochs": 1e9}, "epochs"),
        ({"epochs": 10**9}, "epochs"),
        ({"max_length": 10**8}, "max_length"),
        ({"batch_size": 10**7}, "batch_size"),
        ({"max_steps": 10**9, "save_every": 1}, "max_steps"),
        ({"max_steps": 10_000, "save_every": 1}, "save_every"),
        ({"seed": 2**32}, "seed"),
        ({"seed": -1}, "seed"),
        ({"beta": "0.1"}, "beta"),
        ({"lora": 1}, "lora"),
        ({"loss_type": "hinge_and_more"}, "loss_type"),
        ({"loss_type": "ipo", "label_smoothing": 0.1}, "label_smoothing"),
        ({"batch_size": 16, "micro_batch_size": 5}, "micro_batch_size"),
        ({"max_length": 64, "max_prompt_length": 64}, "max_prompt_length"),
        ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0]}, "loss_weights"),
        ({"loss_type": "sigmoid", "loss_weights": [1.0, 1.0]}, "loss_weights"),
        ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.0]}, "loss_weights"),
        ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, -2.0]}, "loss_weights"),
        ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, "2"]}, "loss_weights"),
        ({"loss_type": ["sigmoid", "sft"], "loss_weights": 1.0}, "loss_weights"),
        ({"loss_type": ["sigmoid", "hinge_and_more"]}, "loss_type"),
        ({"loss_type": ["sigmoid", "sigmoid"]}, "loss_type"),
        ({"loss_type": []}, "loss_type"),
        ({"loss_type": ["simpo", "sigmoid"]}, "loss_type"),
        ({"loss_type": ["sigmoid"], "simpo_gamma": -1.0}, "simpo_gamma"),
        ({"trackers": ["tensorboard", "comet"]}, "trackers"),
        ({"trackers": "tensorboard"}, "trackers"),
        ({"compile": "max-autotune"}, "compile"),
        ({"distributed": "deepspeed"}, "distributed"),
        ({"processes": 2}, "processes"),
        ({"processes": 0}, "processes"),
        ({"divergence_factor": 1.0}, "divergence_factor"),
        ({"padding_free": "yes"}, "padding_free"),
        ({"shuffle": None}, "shuffle"),
    ],
)
def test_out_of_bounds_values_get_422_naming_the_key(
    world: World, client: Client, hyperparameters: dict[str, Any], key: str
) -> None:
    assert refused_key(post_run(client, world, hyperparameters)) == key


@pytest.mark.django_db
@pytest.mark.parametrize("number", ["NaN", "Infinity"])
def test_non_finite_loss_weights_get_422_naming_them(world: World, client: Client, number: str):
    raw = json.dumps(
        {
            "snapshot_id": world.home.snapshot.id,
            "start_checkpoint_id": world.home.checkpoint.id,
            "hyperparameters": {"loss_type": ["sigmoid", "sft"], "loss_weights": [1, "X"]},
        }
    ).replace('"X"', number)
    assert refused_key(post_run(client, world, None, raw=raw)) == "loss_weights"


@pytest.mark.django_db
def test_a_combined_loss_and_the_engine_options_are_accepted_and_passed_on(
    world: World, client: Client
) -> None:
    hyperparameters = {
        "loss_type": ["sigmoid", "sft"],
        "loss_weights": [1.0, 0.5],
        "use_pair_weights": False,
        "shuffle": False,
        "divergence_factor": None,
        "padding_free": True,
        "compile": "off",
        "trackers": [],
        "distributed": "fsdp",
    }
    response = post_run(client, world, hyperparameters)
    assert response.status_code == 202, response.content
    config = response.json()["run"]["config"]
    assert {key: config[key] for key in hyperparameters} == hyperparameters
    run = TrainingRun.objects.get(id=response.json()["run"]["id"])
    engine_config = services._engine_config(run)
    assert engine_config["loss_type"] == ["sigmoid", "sft"] and engine_config["processes"] == 1
    # A lone loss name stays a name; no tracker list means the engine's default.
    single = post_run(client, world, {"loss_type": "ipo", "trackers": ["tensorboard", "mlflow"]})
    assert single.status_code == 202, single.content
    single_config = single.json()["run"]["config"]
    assert single_config["loss_type"] == "ipo" and single_config["loss_weights"] is None
    assert single_config["trackers"] == ["tensorboard", "mlflow"]


@pytest.mark.django_db
def test_processes_are_bounded_by_the_workers_count_and_launched_as_asked(
    world: World, client: Client, settings: Any
) -> None:
    from training.runner import engine_command

    settings.PREFLAB_TRAIN_PROCESSES = 4
    assert refused_key(post_run(client, world, {"processes": 5})) == "processes"
    response = post_run(client, world, {"processes": 2})
    assert response.status_code == 202, response.content
    run = TrainingRun.objects.get(id=response.json()["run"]["id"])
    assert services._engine_config(run)["processes"] == 2
    command = engine_command("train", "--config", "x", processes=services.run_processes(run))
    assert command[command.index("--num_processes") + 1] == "2"
    # Unset: the worker's own count, as before the setting existed.
    default = TrainingRun.objects.get(id=post_run(client, world, {}).json()["run"]["id"])
    assert services.run_processes(default) == 4
    assert services._engine_config(default)["processes"] == 4
    one = post_run(client, world, {"processes": 1}).json()["run"]["id"]
    plain = engine_command(
        "train", processes=services.run_processes(TrainingRun.objects.get(id=one))
    )
    assert "accelerate.commands.launch" not in plain


@pytest.mark.django_db
@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_weight_decay_gets_422_not_500(world: World, client: Client, number: str):
    raw = json.dumps(
        {
            "snapshot_id": world.home.snapshot.id,
            "start_checkpoint_id": world.home.checkpoint.id,
            "hyperparameters": {"weight_decay": "PLACEHOLDER"},
        }
    ).replace('"PLACEHOLDER"', number)
    assert refused_key(post_run(client, world, None, raw=raw)) == "weight_decay"


@pytest.mark.django_db
def test_reference_free_with_a_reference_checkpoint_is_refused(world: World, client) -> None:
    response = client.post(
        f"/api/v1/projects/{world.home.project.id}/runs",
        {
            "snapshot_id": world.home.snapshot.id,
            "start_checkpoint_id": world.home.checkpoint.id,
            "reference_checkpoint_id": world.home.checkpoint.id,
            "hyperparameters": {"reference_free": True},
        },
        content_type="application/json",
        **bearer(world.token(["train"])),
    )
    assert refused_key(response) == "reference_free"


@pytest.mark.django_db
def test_save_every_is_checked_against_the_snapshot_size(world: World, client: Client) -> None:
    # 6 pairs at batch size 1 for 100 epochs is about 600 steps: 600 checkpoints.
    response = post_run(
        client, world, {"batch_size": 1, "micro_batch_size": 1, "epochs": 100, "save_every": 1}
    )
    assert refused_key(response) == "save_every"


@pytest.mark.django_db
def test_an_accepted_run_stores_every_parameter_with_defaults(world: World, client) -> None:
    response = post_run(client, world, {"beta": 0.2, "max_length": 128})
    assert response.status_code == 202, response.content
    config = response.json()["run"]["config"]
    assert set(config) == {param.name for param in RUN_PARAMS}
    assert (config["beta"], config["max_length"], config["max_prompt_length"]) == (0.2, 128, 64)
    assert "trust_remote_code" not in config and "cache_dir" not in config


@pytest.mark.django_db
def test_the_worker_passes_the_staff_setting_of_the_checkpoint(world: World) -> None:
    run = world.home.run
    engine_config = services._engine_config(run)
    assert engine_config["trust_remote_code"] is False
    Checkpoint.objects.filter(id=run.start_checkpoint_id).update(trust_remote_code=True)
    run.refresh_from_db()
    assert services._engine_config(run)["trust_remote_code"] is True
    # A reference model that staff did not allow keeps the whole run from running remote code.
    other = services.register_base_model(world.home.project, "models/untrusted")
    run.reference_checkpoint = other
    assert services._engine_config(run)["trust_remote_code"] is False


def test_nothing_the_engine_leaves_to_the_worker_is_user_settable() -> None:
    from training.engine.config import WORKER_MANAGED_KEYS

    names = {param.name for param in RUN_PARAMS}
    assert not names & WORKER_MANAGED_KEYS
    assert "trust_remote_code" not in names


def test_the_definition_has_help_text_and_bounds_for_every_number() -> None:
    for param in (*RUN_PARAMS, *SAMPLING_PARAMS):
        assert param.help, param.name
        if param.kind in (int, float):
            assert param.minimum is not None and param.maximum is not None, param.name


@pytest.mark.django_db
def test_the_run_form_uses_the_same_definition(world: World) -> None:
    project = world.home.project
    # Whatever the form offers, filled in with the values it suggests.
    suggested = RunForm(project)
    initial = {
        name: suggested.get_initial_for_field(field, name)
        for name, field in suggested.fields.items()
    }
    base = {name: value for name, value in initial.items() if value is not None}
    base = {name: value for name, value in base.items() if value is not False}
    base.update(
        snapshot=world.home.snapshot.id,
        start_checkpoint=world.home.checkpoint.id,
        batch_size=16,
        micro_batch_size=4,
    )
    form = RunForm(project, base)
    assert form.is_valid(), form.errors
    assert set(form.hyperparameters()) == {param.name for param in RUN_PARAMS}
    assert form.fields["beta"].help_text == "Strength of the pull towards the reference model."
    too_many = RunForm(project, {**base, "epochs": 10**9})
    assert not too_many.is_valid() and "epochs" in too_many.errors
    not_divisible = RunForm(project, {**base, "micro_batch_size": 5})
    assert not not_divisible.is_valid() and "micro_batch_size" in not_divisible.errors


@pytest.mark.django_db
@pytest.mark.parametrize(
    "generation, prompt_limit, key",
    [
        ({"seed": 10**30}, None, "seed"),
        ({"seed": SEED_MAX + 1}, None, "seed"),
        ({"temperature": float("nan")}, None, "temperature"),
        ({"max_new_tokens": 10**9}, None, "max_new_tokens"),
        ({"stop": ["x"]}, None, "stop"),
        ({}, 10**12, "prompt_limit"),
        ({}, -1, "prompt_limit"),
    ],
)
def test_sampling_parameters_are_bounded(
    world: World, generation: dict[str, Any], prompt_limit: int | None, key: str
) -> None:
    with pytest.raises(services.RunRefused) as refused:
        services.start_sampling(
            world.home.project,
            world.home.checkpoint,
            selection="fewest_votes",
            prompt_limit=1 if prompt_limit is None else prompt_limit,
            generation=generation,
        )
    assert refused.value.key == key
    assert not SamplingJob.objects.exists()


@pytest.mark.django_db
def test_sampling_within_bounds_stores_every_setting(world: World) -> None:
    prompts = world.home.project.prompts.count()
    job = services.start_sampling(
        world.home.project,
        world.home.checkpoint,
        selection="random",
        prompt_limit=prompts,
        generation={"seed": SEED_MAX},
    )
    assert job.generation == {
        "temperature": 1.0,
        "top_p": 0.95,
        "max_new_tokens": 128,
        "seed": SEED_MAX,
    }


@pytest.mark.django_db
def test_the_sampling_page_refuses_a_huge_seed_or_prompt_limit(world: World, client) -> None:
    admin = make_user("sampler")
    from labeling.services import add_member

    add_member(world.home.project, admin, Role.ADMIN)
    client.force_login(admin)
    url = reverse(
        "training:sampling_create", args=[world.home.project.id, world.home.checkpoint.id]
    )
    base = {
        "selection": "random",
        "prompt_limit": 1,
        "pairing": "two_samples",
        "temperature": 1.0,
        "top_p": 0.95,
        "max_new_tokens": 16,
        "seed": 0,
    }
    for field, value in (("seed", 10**30), ("prompt_limit", 10**12)):
        response = client.post(url, {**base, field: value})
        assert response.status_code == 400
        assert field in SamplingForm(world.home.project, {**base, field: value}).errors
    assert not SamplingJob.objects.exists()


def test_docs_list_every_run_parameter_with_its_default() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip(" `"): line for line in docs.splitlines() if line.startswith("| `")
    }
    for param in RUN_PARAMS:
        assert param.name in rows, f"docs/api.md does not list {param.name}"
        assert param.help in rows[param.name], param.name
    # The table is generated: regenerate it as training.params.markdown_table says.
    from training.params import markdown_table

    assert markdown_table(RUN_PARAMS) in docs
