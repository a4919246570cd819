"""Quality control, evaluation and AI judges: the schema the three share.

Votes get a source (human, judge, imported) and may name a judge; imported votes are
backfilled from `imported_from`. Prompts get a split (held-out eval prompts), rounds a
purpose, snapshots filters and two new policies. The snapshot immutability trigger is created
again at the end because SQLite drops it whenever a column change rebuilds the table.
"""

import django.core.validators
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

from labeling.migrations import _snapshot_trigger as trigger


def mark_imported_votes(apps, schema_editor):
    Vote = apps.get_model("labeling", "Vote")
    Vote.objects.filter(annotator__isnull=True).exclude(imported_from="").update(source="imported")


class Migration(migrations.Migration):

    dependencies = [
        ('labeling', '0008_snapshot_path_is_a_key'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Adjudication',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('choice', models.CharField(choices=[('A', 'A is better'), ('B', 'B is better'), ('tie', 'Tie'), ('both_bad', 'Both bad')], max_length=16)),
                ('note', models.TextField(blank=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.CreateModel(
            name='AnnotatorExclusion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('reason', models.TextField()),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('lifted_at', models.DateTimeField(blank=True, null=True)),
                ('lift_reason', models.TextField(blank=True)),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='Invite',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('role', models.CharField(choices=[('annotator', 'Annotator'), ('reviewer', 'Reviewer'), ('admin', 'Admin')], default='annotator', max_length=16)),
                ('token_hash', models.CharField(max_length=64, unique=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('expires_at', models.DateTimeField()),
                ('used_at', models.DateTimeField(blank=True, null=True)),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='ItemFlag',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('skip', 'Skipped'), ('flag', 'Flagged for review')], max_length=8)),
                ('reason', models.CharField(choices=[('unreadable', 'Unreadable'), ('harmful', 'Harmful content'), ('cannot_judge', 'Cannot judge'), ('other', 'Other')], max_length=16)),
                ('note', models.TextField(blank=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('resolved_at', models.DateTimeField(blank=True, null=True)),
                ('resolution', models.TextField(blank=True)),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='Judge',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=200)),
                ('kind', models.CharField(max_length=16)),
                ('config', models.JSONField(blank=True, default=dict)),
                ('version', models.PositiveIntegerField(default=1, help_text='Raised whenever the configuration changes; votes keep theirs.')),
                ('enabled', models.BooleanField(default=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'ordering': ['project', 'name'],
            },
        ),
        migrations.CreateModel(
            name='QualityReport',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=16)),
                ('attempts', models.PositiveSmallIntegerField(default=0, help_text='How many times a worker has claimed this job.')),
                ('queued_at', models.DateTimeField(default=django.utils.timezone.now, help_text='When the job was last queued (or its message re-sent).')),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
                ('worker', models.CharField(blank=True, help_text='host:pid of the worker that claimed it last.', max_length=255)),
                ('error', models.TextField(blank=True)),
                ('traceback', models.TextField(blank=True)),
                ('log_tail', models.TextField(blank=True)),
                ('cancel_requested', models.BooleanField(default=False)),
                ('data', models.JSONField(blank=True, default=dict)),
                ('vote_count', models.PositiveIntegerField(default=0)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'ordering': ['-id'],
                'abstract': False,
            },
        ),
        migrations.RemoveConstraint(
            model_name='vote',
            name='vote_has_author_or_source',
        ),
        migrations.AddField(
            model_name='project',
            name='gate_rule',
            field=models.JSONField(blank=True, default=dict, help_text="The promotion rule a checkpoint's evaluation must pass (docs/evaluation.md)."),
        ),
        migrations.AddField(
            model_name='project',
            name='gold_rate',
            field=models.FloatField(default=0.1, help_text="Share of an annotator's served items that are gold items, when any exist.", validators=[django.core.validators.MinValueValidator(0.0), django.core.validators.MaxValueValidator(0.5)]),
        ),
        migrations.AddField(
            model_name='project',
            name='judged_to_humans',
            field=models.BooleanField(default=True, help_text='Comparisons that judges decided consistently are still served to humans.'),
        ),
        migrations.AddField(
            model_name='project',
            name='quality_settings',
            field=models.JSONField(blank=True, default=dict, help_text='Thresholds that flag annotators (docs/quality.md); empty keys use defaults.'),
        ),
        migrations.AddField(
            model_name='project',
            name='queue_order',
            field=models.CharField(choices=[('newest_round', 'Newest round first'), ('fewest_votes', 'Fewest votes first'), ('random', 'Random')], default='newest_round', help_text='Which open comparison an annotator is served next.', max_length=16),
        ),
        migrations.AddField(
            model_name='prompt',
            name='split',
            field=models.CharField(choices=[('train', 'Training'), ('eval', 'Held out for evaluation')], db_index=True, default='train', max_length=8),
        ),
        migrations.AddField(
            model_name='round',
            name='purpose',
            field=models.CharField(choices=[('training', 'Training'), ('evaluation', 'Evaluation')], default='training', max_length=16),
        ),
        migrations.AddField(
            model_name='snapshot',
            name='filters',
            field=models.JSONField(blank=True, default=dict, help_text='Which votes count: rounds, sources, excluded judges or annotators, adjudicated only (docs/quality.md).'),
        ),
        migrations.AddField(
            model_name='vote',
            name='judge_output',
            field=models.JSONField(blank=True, default=dict, help_text="A judge's raw answers or scores, both orders."),
        ),
        migrations.AddField(
            model_name='vote',
            name='judge_version',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='vote',
            name='source',
            field=models.CharField(choices=[('human', 'Human annotator'), ('judge', 'AI judge'), ('imported', 'Imported')], db_index=True, default='human', max_length=16),
        ),
        migrations.AlterField(
            model_name='snapshot',
            name='policy',
            field=models.CharField(choices=[('every_vote', 'Every decisive vote is its own triple'), ('majority', 'One triple per comparison by majority'), ('reliability_weighted', 'One triple per comparison, weighted by annotator reliability'), ('raw_votes', 'Every vote, ties and both-bad included (for analysis)')], max_length=32),
        ),
        migrations.AddField(
            model_name='adjudication',
            name='comparison',
            field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='adjudication', to='labeling.comparison'),
        ),
        migrations.AddField(
            model_name='adjudication',
            name='reviewer',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='adjudications', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='annotatorexclusion',
            name='annotator',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='exclusions', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='annotatorexclusion',
            name='created_by',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='annotatorexclusion',
            name='lifted_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='annotatorexclusion',
            name='project',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='exclusions', to='labeling.project'),
        ),
        migrations.AddField(
            model_name='invite',
            name='created_by',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='invite',
            name='project',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='invites', to='labeling.project'),
        ),
        migrations.AddField(
            model_name='invite',
            name='used_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='itemflag',
            name='comparison',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='flags', to='labeling.comparison'),
        ),
        migrations.AddField(
            model_name='itemflag',
            name='resolved_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='itemflag',
            name='user',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='item_flags', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='judge',
            name='created_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='judge',
            name='project',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='judges', to='labeling.project'),
        ),
        migrations.AddField(
            model_name='vote',
            name='judge',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='votes', to='labeling.judge'),
        ),
        migrations.AddConstraint(
            model_name='vote',
            constraint=models.CheckConstraint(condition=models.Q(('annotator__isnull', False), models.Q(('imported_from', ''), _negated=True), ('judge__isnull', False), _connector='OR'), name='vote_has_author_or_source'),
        ),
        migrations.AddConstraint(
            model_name='vote',
            constraint=models.UniqueConstraint(condition=models.Q(('judge__isnull', False)), fields=('comparison', 'judge'), name='one_vote_per_judge'),
        ),
        migrations.AddField(
            model_name='qualityreport',
            name='created_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='qualityreport',
            name='project',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='quality_reports', to='labeling.project'),
        ),
        migrations.AddField(
            model_name='qualityreport',
            name='round',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='quality_reports', to='labeling.round'),
        ),
        migrations.AddConstraint(
            model_name='annotatorexclusion',
            constraint=models.UniqueConstraint(condition=models.Q(('lifted_at__isnull', True)), fields=('project', 'annotator'), name='one_active_exclusion_per_annotator'),
        ),
        migrations.AddConstraint(
            model_name='itemflag',
            constraint=models.UniqueConstraint(fields=('comparison', 'user'), name='one_flag_per_user_item'),
        ),
        migrations.AddConstraint(
            model_name='judge',
            constraint=models.UniqueConstraint(fields=('project', 'name'), name='judge_name_per_project'),
        ),
        migrations.AddIndex(
            model_name='qualityreport',
            index=models.Index(fields=['status', 'heartbeat_at'], name='labeling_qualityreport_watch'),
        ),
        migrations.RunPython(mark_imported_votes, migrations.RunPython.noop),
        migrations.RunPython(trigger.recreate, migrations.RunPython.noop),
    ]
