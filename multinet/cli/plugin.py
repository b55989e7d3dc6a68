"""The CNI plugin binary, in-process: env and stdin in, result or error JSON out."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping

from multinet.attach.verbs import handle
from multinet.cli import logs
from multinet.cni import version as versions
from multinet.cni.errors import INTERNAL, CNIError
from multinet.cni.request import decode_config, request_from_env

log = logging.getLogger("multinet.plugin")


def _error_version(stdin: bytes) -> str:
    try:
        version = decode_config(stdin).get("cniVersion")
    except CNIError:
        return versions.LATEST
    return version if version in versions.SUPPORTED_VERSIONS else versions.LATEST


def serve(env: Mapping[str, str], stdin: bytes) -> tuple[int, str]:
    """Answer one request: (exit code, stdout text). Never raises."""
    started = time.monotonic()
    command, container = env.get("CNI_COMMAND", "?"), env.get("CNI_CONTAINERID", "")
    try:
        try:
            logs.configure(decode_config(stdin))
        except CNIError:
            logs.configure({})
        request = request_from_env(env, stdin)
        reply = handle(request, base_env=env)
    except CNIError as err:
        log.error("%s container=%s failed code=%d: %s", command, container, err.code, err.msg)
        return 1, err.to_json(_error_version(stdin))
    except Exception as exc:  # the runtime must get CNI JSON, never a traceback
        log.exception("%s container=%s crashed", command, container)
        err = CNIError(INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
        return 1, err.to_json(_error_version(stdin))
    log.info("%s container=%s ok seconds=%.6f", command, container, time.monotonic() - started)
    return 0, json.dumps(reply) if reply is not None else ""


def main() -> int:
    code, text = serve(os.environ, sys.stdin.buffer.read())
    if text:
        sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
