"""Celery's file-system transport (the no-install default broker), with atomic writes.

kombu's own file-system channel creates a message file and then writes it, so a consumer that
lists the folder in between reads an empty file and its consumer dies on the JSONDecodeError
("Unrecoverable error"). Here a message is written under a name the consumers skip (they take
only `<name>.<queue>.msg`) and renamed into place, which is atomic.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    # kombu's own base classes disagree on this parameter's name (message vs payload); callers
    # pass it by position.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.partial"
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
