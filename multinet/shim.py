"""The CNI binary the runtime executes: one call carried to the node daemon.

Standard library only, and nothing from the rest of the package on the normal
path, so the interpreter can start with `-I -S` (no site-packages scan) and the
whole run costs tens of milliseconds. The wire format is described in
docs/protocol.md; this module owns it (the daemon imports the framing from here).

The runtime runs the launcher `multinet.daemon.install` writes (see docs/daemon.md).
"""

from __future__ import annotations

import binascii
import json
import os
import socket
import sys
import time

# Every import here is paid on every pod: typing, collections and base64 would add
# about a third to the shim's run time, so they are for type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

PROTOCOL_VERSION = 1
DEFAULT_SOCKET = "/run/multinet/multinet.sock"
DEFAULT_CNI_DIR = "/var/lib/cni/multinet"  # kept equal to multinet.attach.conf
DEFAULT_MULTUS_CACHE_DIR = "/var/lib/cni/multus"  # likewise
LOCK_DIR = ".locks"  # kept equal to multinet.attach.lock
MAX_ID_LENGTH = 255  # a record's file name
OVERLAY_FILE = "overlay.json"  # the daemon's config overlay, next to its socket
MAX_FRAME = 16 << 20
HEADER_SIZE = 4

# Kept equal to multinet.cni.version (a unit test checks), so VERSION needs no import.
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")

INVALID_ENV = 4
DECODE_FAILURE = 6
TRY_AGAIN_LATER = 11
STATUS_UNAVAILABLE = 50
INTERNAL = 101

DEFAULT_WAIT_SECONDS = 10.0
MAX_WAIT_SECONDS = 600.0  # shimWaitSeconds above this (or Infinity) is this
POLL_SECONDS = 0.1
# Set to 1 to forbid running the engine in this process (tests; nodes without it).
NO_INPROCESS_ENV = "MULTINET_NO_INPROCESS"
SOCKET_ENV = "MULTINET_SOCKET"


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


class Unreachable(Exception):
    """No answer from the daemon: not listening, or gone before it answered."""

    def __init__(self, msg: str, sent: bool = False) -> None:
        super().__init__(msg)
        self.sent = sent  # the request may have reached the daemon


# -- framing -----------------------------------------------------------------------------

def send_frame(sock: socket.socket, message: Mapping[str, Any]) -> None:
    """One frame: a 4-byte big-endian length, then that many bytes of UTF-8 JSON."""
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    sock.sendall(len(body).to_bytes(HEADER_SIZE, "big") + body)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ProtocolError(f"connection closed with {left} of {size} bytes unread")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> dict[str, Any]:
    size = int.from_bytes(_recv_exact(sock, HEADER_SIZE), "big")
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes exceeds {MAX_FRAME}")
    try:
        message = json.loads(_recv_exact(sock, size))
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("frame is not a JSON object")
    return message


def encode_request(env: Mapping[str, str], stdin: bytes) -> dict[str, Any]:
    """The request frame: the CNI_* variables and stdin (text, or base64 if not UTF-8)."""
    message: dict[str, Any] = {"version": PROTOCOL_VERSION,
                               "env": {k: v for k, v in env.items() if k.startswith("CNI_")}}
    try:
        message["stdin"] = stdin.decode()
    except UnicodeDecodeError:
        message["stdinBase64"] = binascii.b2a_base64(stdin, newline=False).decode()
    return message


def _utf8(value: str, field: str) -> bytes:
    try:
        return value.encode()
    except UnicodeEncodeError:  # a lone surrogate, from a \ud800 escape
        raise ProtocolError(f"{field} is not valid Unicode text") from None


def decode_request(message: Any) -> tuple[dict[str, str], bytes]:
    """(env, stdin) from a request frame; ProtocolError naming the field if malformed.

    Only CNI_* variables may travel: the delegates inherit the daemon's own
    environment, never a caller's PATH or LD_PRELOAD.
    """
    if not isinstance(message, dict):
        raise ProtocolError("frame is not a JSON object")
    version = message.get("version")
    if type(version) is not int or version != PROTOCOL_VERSION:  # 1.0 and true are not 1
        raise ProtocolError(f"unsupported protocol version {version!r}")
    env = message.get("env")
    if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ProtocolError("env must be an object of strings")
    for key, value in env.items():
        if not key.startswith("CNI_"):
            raise ProtocolError(f"env key {key!r} is not a CNI_ variable")
        name = _utf8(key, f"env key {key!r}")
        if b"=" in name or b"\0" in name or b"\0" in _utf8(value, f"env {key}"):
            raise ProtocolError(f"env {key!r} holds '=' or NUL")
    if "stdin" in message and "stdinBase64" in message:
        raise ProtocolError("stdin and stdinBase64 are exclusive: send one")
    if "stdin" in message:
        if not isinstance(message["stdin"], str):
            raise ProtocolError("stdin must be a string")
        return env, _utf8(message["stdin"], "stdin")
    if isinstance(message.get("stdinBase64"), str):
        try:
            return env, binascii.a2b_base64(message["stdinBase64"].encode(), strict_mode=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise ProtocolError("stdinBase64 is not base64") from None
    raise ProtocolError("stdin or stdinBase64 is required")


def encode_answer(code: int, stdout: str) -> dict[str, Any]:
    return {"code": code, "stdout": stdout}


def decode_answer(message: Mapping[str, Any]) -> tuple[int, str]:
    code, stdout = message.get("code"), message.get("stdout")
    if not isinstance(code, int) or isinstance(code, bool) or not isinstance(stdout, str):
        raise ProtocolError("answer needs an integer code and a string stdout")
    return code, stdout


# -- talking to the daemon ---------------------------------------------------------------

def exchange(path: str, env: Mapping[str, str], stdin: bytes) -> tuple[int, str]:
    """Send one request, wait for its answer. Unreachable if there is none."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            # Blocking connect: a full backlog makes us wait instead of failing.
            sock.connect(path)
        except OSError as exc:
            raise Unreachable(f"cannot connect: {exc.strerror or exc}") from None
        try:
            send_frame(sock, encode_request(env, stdin))
            return decode_answer(recv_frame(sock))
        except (OSError, ProtocolError) as exc:
            raise Unreachable(f"no answer: {exc}", sent=True) from None
    finally:
        sock.close()


def error_json(config: Mapping[str, Any], code: int, msg: str, details: str = "") -> str:
    version = config.get("cniVersion")
    out: dict[str, Any] = {"cniVersion": version if version in SUPPORTED_VERSIONS else LATEST,
                           "code": code, "msg": msg}
    if details:
        out["details"] = details
    return json.dumps(out)


def _config(stdin: bytes) -> dict[str, Any] | None:
    """The stdin config, {} when empty, None when it is not a JSON object."""
    if not stdin.strip():
        return {}
    try:
        config = json.loads(stdin)
    except (ValueError, RecursionError):
        return None
    return config if isinstance(config, dict) else None


def socket_path(env: Mapping[str, str], config: Mapping[str, Any]) -> str:
    configured = config.get("socketPath")
    return (env.get(SOCKET_ENV)
            or (configured if isinstance(configured, str) and configured else DEFAULT_SOCKET))


def _wait_seconds(config: Mapping[str, Any]) -> float:
    """shimWaitSeconds: the default unless a number >= 0; at most MAX_WAIT_SECONDS."""
    value = config.get("shimWaitSeconds", DEFAULT_WAIT_SECONDS)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DEFAULT_WAIT_SECONDS
    if isinstance(value, int):  # an int too large for a float is simply large
        value = min(value, int(MAX_WAIT_SECONDS))
    if not value >= 0:  # negative, or NaN (which compares false with everything)
        return DEFAULT_WAIT_SECONDS
    return min(float(value), MAX_WAIT_SECONDS)


# -- the engine in this process, for when the daemon is away ------------------------------

def _overlay(path: str) -> tuple[bool, dict[str, Any] | None]:
    """(found, overlay): the daemon's overlay next to its socket; None if unreadable."""
    try:
        with open(os.path.join(os.path.dirname(path), OVERLAY_FILE), "rb") as handle:
            overlay = json.loads(handle.read())
    except FileNotFoundError:
        return False, None
    except (OSError, ValueError, RecursionError):
        return True, None
    return True, overlay if isinstance(overlay, dict) else None


def _with_overlay(stdin: bytes, path: str, container_id: str | None) -> bytes | None:
    """stdin with the daemon's overlay applied, as the daemon would; None if unsafe.

    `container_id` is given for DEL, which must find the record its ADD left.
    """
    config = _config(stdin)
    found, overlay = _overlay(path)
    if not found:
        # No overlay (the daemon never ran, or /run was wiped by a reboot). An ADD
        # run here is real either way; a DEL goes ahead only where the record is, or
        # it would find none and "succeed" with nothing undone.
        if container_id is None:
            return stdin
        if config is None or not container_id:
            return None
        cni_dir = config.get("cniDir") or DEFAULT_CNI_DIR
        here = isinstance(cni_dir, str) and os.path.isfile(os.path.join(cni_dir, container_id))
        return stdin if here or _multus_cache(config, container_id) is not False else None
    if overlay is None or config is None:
        return None
    if not overlay:
        return stdin
    return json.dumps({**config, **overlay}).encode()


def in_process(env: Mapping[str, str], stdin: bytes, path: str) -> tuple[int, str] | None:
    """Run the engine here; None when it is not installed, not allowed, or unsafe."""
    if env.get(NO_INPROCESS_ENV, "") not in ("", "0"):
        return None
    is_del = env.get("CNI_COMMAND") == "DEL"
    stdin = _with_overlay(stdin, path, env.get("CNI_CONTAINERID", "") if is_del else None)
    if stdin is None:
        return None
    if sys.flags.no_site:
        import site  # the launcher skipped it: the engine's dependencies live there

        site.main()
    try:
        from multinet.cli import plugin
    except ImportError:
        return None
    return plugin.serve(env, stdin)


# -- the verbs -----------------------------------------------------------------------------

def _version(config: Mapping[str, Any]) -> tuple[int, str]:
    version = config.get("cniVersion")
    if version not in SUPPORTED_VERSIONS:  # never echo what we do not speak (a list, 5, ...)
        version = LATEST
    return 0, json.dumps({"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)})


def _valid_id(container_id: str) -> bool:
    """A container id as the engine's rule allows (multinet.cni.request), so never a
    path: only such an id is looked up in cniDir."""
    return (0 < len(container_id) <= MAX_ID_LENGTH and container_id.isascii()
            and container_id[0].isalnum()
            and all(c.isalnum() or c in "_.-" for c in container_id))


def _record_files(cni_dir: str, container_id: str) -> bool | None:
    """Whether cniDir holds any file of this container (its record, a copy of it);
    None when that cannot be told."""
    try:
        names = os.listdir(cni_dir)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    return any(container_id in name for name in names if name != LOCK_DIR)


def _multus_cache(config: Mapping[str, Any], container_id: str) -> bool | None:
    """Whether Multus left its cache for this container (a pod it attached before the
    node moved to multinet, which the engine DELs: multinet.attach.takeover); None
    when that cannot be told. One lstat: the quick DEL stays quick."""
    cache_dir = config.get("multusCacheDir", DEFAULT_MULTUS_CACHE_DIR)
    if not _valid_id(container_id) or not isinstance(cache_dir, str) \
            or not os.path.isabs(cache_dir):
        return None
    try:
        os.lstat(os.path.join(cache_dir, container_id))
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return None
    return True


def _nothing_to_delete(env: Mapping[str, str], config: Mapping[str, Any], path: str) -> bool:
    """True when a DEL has nothing to undo: the container has no record, no Multus
    cache, and no operation on it holds its lock. Only told where the daemon's
    overlay exists (so cniDir is the one the daemon uses); otherwise the answer is
    False."""
    container_id = env.get("CNI_CONTAINERID", "")
    if not _valid_id(container_id):
        return False
    _, overlay = _overlay(path)
    if overlay is None:  # missing or unreadable: where the records are is not known
        return False
    cni_dir = overlay.get("cniDir", config.get("cniDir")) or DEFAULT_CNI_DIR
    if not isinstance(cni_dir, str) or not os.path.isabs(cni_dir):
        return False
    import contextlib
    import fcntl  # only here: every other run of the shim goes without them

    lock = os.path.join(cni_dir, LOCK_DIR, f"{container_id}.lock")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1
    except OSError:
        return False
    try:
        if fd >= 0:
            try:
                # Held while the check runs, so an ADD cannot write a record meanwhile.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False  # an ADD or DEL of this container is under way
        if _record_files(cni_dir, container_id) is not False:
            return False
        if _multus_cache({**config, **overlay}, container_id) is not False:
            return False
        if fd >= 0:
            # Left by an engine killed before its intent was written: removed while
            # held, as the engine's own DEL does (multinet.attach.lock).
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
        return True
    finally:
        if fd >= 0:
            os.close(fd)


def _delete(env: Mapping[str, str], stdin: bytes, config: Mapping[str, Any],
            path: str) -> tuple[int, str]:
    """DEL: the daemon if it comes back in time, else the engine here, else code 11.

    With the daemon down and nothing to undo, success at once: waiting would only
    make the runtime wait.
    """
    deadline = time.monotonic() + _wait_seconds(config)
    while True:
        try:
            return exchange(path, env, stdin)
        except Unreachable as exc:
            problem = str(exc)
            if not exc.sent and _nothing_to_delete(env, config, path):
                return 0, ""
        if time.monotonic() + POLL_SECONDS > deadline:
            break
        time.sleep(POLL_SECONDS)
    answer = in_process(env, stdin, path)
    if answer is not None:
        return answer
    return 1, error_json(config, TRY_AGAIN_LATER,
                         f"multinet daemon at {path} unreachable; DEL not done, retry later",
                         problem)


def run(env: Mapping[str, str], stdin: bytes) -> tuple[int, str]:
    """Answer one CNI call: (exit code, stdout text)."""
    config = _config(stdin)
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        what = f"unknown CNI_COMMAND: {command}" if command else \
            "required env variables [CNI_COMMAND] missing"
        return 1, error_json(config or {}, INVALID_ENV, what)
    if config is None:
        return 1, error_json({}, DECODE_FAILURE, "stdin config is not a valid JSON object")
    if command == "VERSION":
        return _version(config)
    path = socket_path(env, config)
    if command == "DEL":
        return _delete(env, stdin, config, path)
    try:
        return exchange(path, env, stdin)
    except Unreachable as exc:
        problem, sent = str(exc), exc.sent
    # Only when the daemon never saw the request: running it again could do it twice.
    if config.get("inProcessFallback") is True and not sent:
        answer = in_process(env, stdin, path)
        if answer is not None:
            return answer
    code = STATUS_UNAVAILABLE if command == "STATUS" else TRY_AGAIN_LATER
    return 1, error_json(config, code, f"multinet daemon at {path} unreachable; "
                         f"{command} not done, retry later", problem)


def print_answer(code: int, text: str) -> int:
    """Print the answer; the exit code, 1 if nobody could read it."""
    try:
        if text:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError:
        # The runtime stopped reading (it was stopped mid-call): nobody to tell.
        # Python would report the unflushed stdout again at exit; send it nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    return code


USAGE = """\
usage: multinet [--version | --help]

multinet is a CNI plugin: the container runtime runs it with CNI_COMMAND (ADD, DEL,
CHECK, VERSION, STATUS, GC) and the other CNI_* variables set, and the network config
on stdin; the answer is JSON on stdout. To inspect or check multinet on a node, use
multinetctl (multinetctl --help).
"""


def about(args: list[str]) -> str | None:
    """The answer to --version or --help, which never waits on stdin; None otherwise."""
    if args[:1] == ["--version"]:
        import multinet  # only __version__: no dependency is loaded

        return (f"multinet {multinet.__version__}\n"
                f"CNI protocol versions supported: {', '.join(SUPPORTED_VERSIONS)}\n")
    if args[:1] in (["--help"], ["-h"]):
        return USAGE
    return None


def main() -> int:
    text = about(sys.argv[1:])
    if text is not None:
        sys.stdout.write(text)
        return 0
    try:
        code, text = run(os.environ, sys.stdin.buffer.read())
    except Exception as exc:  # the runtime must get CNI JSON, never a traceback
        code, text = 1, error_json({}, INTERNAL, f"multinet shim failed: {exc!r}")
    return print_answer(code, text)


if __name__ == "__main__":
    sys.exit(main())
