"""The CNI plugin binary, in-process: env and stdin in, result or error JSON out."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping

from multinet.attach.verbs import respond
from multinet.cli import logs
from multinet.cni.errors import CNIError
from multinet.cni.request import decode_config
from multinet.shim import about, print_answer

log = logging.getLogger("multinet.plugin")


def serve(env: Mapping[str, str], stdin: bytes) -> tuple[int, str]:
    """Answer one request: (exit code, stdout text). Never raises."""
    started = time.monotonic()
    try:
        logs.configure(decode_config(stdin))
    except CNIError:
        logs.configure({})
    code, cni_code, stdout = respond(env, stdin)
    if cni_code == 0:
        log.info("%s container=%s ok seconds=%.6f", env.get("CNI_COMMAND"),
                 env.get("CNI_CONTAINERID", ""), time.monotonic() - started)
    return code, stdout


def main() -> int:
    answer = about(sys.argv[1:])  # before stdin: --version and --help never wait on it
    if answer is not None:
        sys.stdout.write(answer)
        return 0
    code, text = serve(os.environ, sys.stdin.buffer.read())
    return print_answer(code, text)


if __name__ == "__main__":
    sys.exit(main())
