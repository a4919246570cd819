"""A published snapshot refuses UPDATE in the database itself.

The model's save() already refuses, but a queryset update() or raw SQL bypasses it; the trigger
makes "a snapshot never changes after its hash was published" hold for every writer. Deletion
is refused by the model only: test databases and project clean-up must still be able to
remove rows (SQLite empties tables with DELETE).
"""

from django.db import migrations

POSTGRES_UP = """
CREATE OR REPLACE FUNCTION labeling_snapshot_frozen() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'snapshot %% is published and immutable', OLD.id;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER labeling_snapshot_frozen_update BEFORE UPDATE ON labeling_snapshot
    FOR EACH ROW WHEN (OLD.status = 'ready') EXECUTE FUNCTION labeling_snapshot_frozen();
"""
POSTGRES_DOWN = """
DROP TRIGGER IF EXISTS labeling_snapshot_frozen_update ON labeling_snapshot;
DROP FUNCTION IF EXISTS labeling_snapshot_frozen();
"""
SQLITE_UP = [
    """CREATE TRIGGER labeling_snapshot_frozen_update BEFORE UPDATE ON labeling_snapshot
    FOR EACH ROW WHEN OLD.status = 'ready'
    BEGIN SELECT RAISE(ABORT, 'snapshot is published and immutable'); END;""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS labeling_snapshot_frozen_update;",
]


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_UP)
    elif vendor == "sqlite":
        for statement in SQLITE_UP:
            schema_editor.execute(statement)


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_DOWN)
    elif vendor == "sqlite":
        for statement in SQLITE_DOWN:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("labeling", "0002_snapshot")]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
