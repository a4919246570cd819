"""A published snapshot refuses UPDATE and DELETE in the database itself.

The model's save() and delete() already refuse, but a queryset update() or raw SQL bypasses
them; the trigger makes "a snapshot's bytes never change after its hash was published" hold
for every writer.
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
CREATE TRIGGER labeling_snapshot_frozen_delete BEFORE DELETE ON labeling_snapshot
    FOR EACH ROW WHEN (OLD.status = 'ready') EXECUTE FUNCTION labeling_snapshot_frozen();
"""
POSTGRES_DOWN = """
DROP TRIGGER IF EXISTS labeling_snapshot_frozen_update ON labeling_snapshot;
DROP TRIGGER IF EXISTS labeling_snapshot_frozen_delete ON labeling_snapshot;
DROP FUNCTION IF EXISTS labeling_snapshot_frozen();
"""
SQLITE_UP = [
    """CREATE TRIGGER labeling_snapshot_frozen_update BEFORE UPDATE ON labeling_snapshot
    FOR EACH ROW WHEN OLD.status = 'ready'
    BEGIN SELECT RAISE(ABORT, 'snapshot is published and immutable'); END;""",
    """CREATE TRIGGER labeling_snapshot_frozen_delete BEFORE DELETE ON labeling_snapshot
    FOR EACH ROW WHEN OLD.status = 'ready'
    BEGIN SELECT RAISE(ABORT, 'snapshot is published and immutable'); END;""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS labeling_snapshot_frozen_update;",
    "DROP TRIGGER IF EXISTS labeling_snapshot_frozen_delete;",
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
