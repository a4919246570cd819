"""The snapshot immutability trigger, for migrations that must create it again.

SQLite loses a table's triggers whenever Django rebuilds the table for a column change, so a
migration that alters labeling_snapshot calls `recreate` as its last step.
"""

from typing import Any

PUBLISHED = "succeeded"

POSTGRES = f"""
DROP TRIGGER IF EXISTS labeling_snapshot_frozen_update ON labeling_snapshot;
CREATE TRIGGER labeling_snapshot_frozen_update BEFORE UPDATE ON labeling_snapshot
    FOR EACH ROW WHEN (OLD.status = '{PUBLISHED}') EXECUTE FUNCTION labeling_snapshot_frozen();
"""
SQLITE_DROP = "DROP TRIGGER IF EXISTS labeling_snapshot_frozen_update;"
SQLITE_CREATE = f"""CREATE TRIGGER labeling_snapshot_frozen_update BEFORE UPDATE ON labeling_snapshot
    FOR EACH ROW WHEN OLD.status = '{PUBLISHED}'
    BEGIN SELECT RAISE(ABORT, 'snapshot is published and immutable'); END;"""


def recreate(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_DROP)
        schema_editor.execute(SQLITE_CREATE)
