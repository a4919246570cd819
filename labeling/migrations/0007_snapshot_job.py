"""Snapshot becomes a core.models.Job: the shared job columns, and "ready" becomes "succeeded".

The immutability trigger (0003) refuses any UPDATE of a published row and is keyed on its
status value, so it is dropped first, the rows are rewritten, and it is created again for
"succeeded" (SQLite also loses it whenever a column change rebuilds the table). The export
API still answers "ready" for a published snapshot (api/views.py).
"""

import django.utils.timezone
from django.conf import settings
from django.db import migrations, models
from django.db.models import F

POSTGRES_DROP = "DROP TRIGGER IF EXISTS labeling_snapshot_frozen_update ON labeling_snapshot;"
POSTGRES_CREATE = """
CREATE TRIGGER labeling_snapshot_frozen_update BEFORE UPDATE ON labeling_snapshot
    FOR EACH ROW WHEN (OLD.status = '{status}') EXECUTE FUNCTION labeling_snapshot_frozen();
"""
SQLITE_DROP = "DROP TRIGGER IF EXISTS labeling_snapshot_frozen_update;"
SQLITE_CREATE = """CREATE TRIGGER labeling_snapshot_frozen_update BEFORE UPDATE ON labeling_snapshot
    FOR EACH ROW WHEN OLD.status = '{status}'
    BEGIN SELECT RAISE(ABORT, 'snapshot is published and immutable'); END;"""


def _execute(schema_editor, postgres, sqlite):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(postgres)
    elif vendor == "sqlite":
        schema_editor.execute(sqlite)


def drop_trigger(apps, schema_editor):
    _execute(schema_editor, POSTGRES_DROP, SQLITE_DROP)


def trigger_for(status):
    def create(apps, schema_editor):
        _execute(
            schema_editor,
            POSTGRES_CREATE.format(status=status),
            SQLITE_CREATE.format(status=status),
        )

    return create


def rename_status(old, new):
    def rename(apps, schema_editor):
        Snapshot = apps.get_model("labeling", "Snapshot")
        Snapshot.objects.filter(status=old).update(status=new)

    return rename


def jobs_queued_when_created(apps, schema_editor):
    Snapshot = apps.get_model("labeling", "Snapshot")
    Snapshot.objects.update(queued_at=F("created_at"))


class Migration(migrations.Migration):

    dependencies = [
        ('labeling', '0006_vote_client_key'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(drop_trigger, trigger_for("ready")),
        migrations.AddField(
            model_name='snapshot',
            name='attempts',
            field=models.PositiveSmallIntegerField(default=0, help_text='How many times a worker has claimed this job.'),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='cancel_requested',
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='heartbeat_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='log_tail',
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='queued_at',
            field=models.DateTimeField(default=django.utils.timezone.now, help_text='When the job was last queued (or its message re-sent).'),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='traceback',
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='worker',
            field=models.CharField(blank=True, help_text='host:pid of the worker that claimed it last.', max_length=255),
        ),
        migrations.AlterField(
            model_name='snapshot',
            name='status',
            field=models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=16),
        ),
        migrations.AddIndex(
            model_name='snapshot',
            index=models.Index(fields=['status', 'heartbeat_at'], name='labeling_snapshot_watch'),
        ),
        migrations.RunPython(jobs_queued_when_created, migrations.RunPython.noop),
        migrations.RunPython(
            rename_status("ready", "succeeded"), rename_status("succeeded", "ready")
        ),
        migrations.RunPython(trigger_for("succeeded"), drop_trigger),
    ]
