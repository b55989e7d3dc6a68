"""The recorder test plugin (tests/plugins/recorder): its configs and what it recorded."""

from __future__ import annotations

import json
import os
from typing import Any


def recorder(name: str, record: str, **knobs: Any) -> dict[str, Any]:
    """A network of the recorder alone, appending each call to `record`."""
    return {"cniVersion": "1.0.0", "name": name, "type": "recorder", "recordFile": record,
            **knobs}


def recorded(real: dict[str, Any], record: str, **knobs: Any) -> dict[str, Any]:
    """The network `real` run through the recorder, which delegates to its plugin."""
    return {**real, "type": "recorder", "delegate": real["type"], "recordFile": record,
            **knobs}


def read_calls(record: str, command: str = "") -> list[dict[str, Any]]:
    """Each call recorded in `record`, oldest first (only `command`'s when given); none
    when the recorder never ran."""
    if not os.path.exists(record):
        return []
    with open(record) as handle:
        entries = [json.loads(line) for line in handle]
    return [e for e in entries if not command or e["command"] == command]
