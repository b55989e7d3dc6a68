"""Installing the shim as the runtime's CNI binary: something that starts fast.

Where a C compiler is at hand, the runtime's binary is the native shim
(multinet/native/shim.c, about a millisecond per call), and the Python launcher
below sits beside it as `.<name>.py` for everything past the fast path.
Otherwise the launcher itself is the runtime's binary.

The launcher runs the interpreter with `-IS`: isolated (no PYTHON* variables, no
user site, no script directory on sys.path) and without the site module, so
no site-packages directory is scanned at start. It then puts the directory that
holds the `multinet` package on sys.path itself. Only the in-process fallback
loads site-packages, when it needs the engine's dependencies.

    python -m multinet.daemon.install /opt/cni/bin/multinet [--python /usr/bin/python3]
        [--native | --no-native]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import resources

import multinet

LAUNCHER = """\
#!{python} -IS
# multinet CNI shim launcher, written by multinet.daemon.install.
import sys
sys.path.insert(0, {root!r})
from multinet.shim import main
sys.exit(main())
"""


def package_root() -> str:
    """The directory that holds the installed `multinet` package."""
    return os.path.dirname(os.path.dirname(os.path.abspath(multinet.__file__)))


def launcher_text(python: str, root: str) -> str:
    if not os.path.isabs(python):
        raise ValueError(f"the interpreter must be an absolute path, got {python!r}")
    return LAUNCHER.format(python=python, root=root)


def _place(dest: str, write: Callable[[str], None]) -> str:
    """Make `dest` atomically: `write(tmp)` fills a temp file beside it, then rename
    (a shim that is running keeps its old inode: never "text file busy")."""
    directory = os.path.dirname(os.path.abspath(dest))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".multinet-shim-", dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dest


def fallback_path(dest: str) -> str:
    """Where the Python launcher goes when the native shim takes `dest`."""
    directory, name = os.path.split(os.path.abspath(dest))
    return os.path.join(directory, f".{name}.py")


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def install_shim(dest: str, python: str | None = None, root: str | None = None,
                 native: bool | None = None, host_root: str = "") -> str:
    """Install the shim at `dest`; `native` None means: when a C compiler exists.

    `host_root` is where the host's filesystem is mounted when installing from a
    container (e.g. /host): paths written into the shim are the host's own.
    Returns `dest`.
    """
    text = launcher_text(python or sys.executable, root or package_root())
    cc = compiler()
    if native is None:
        native = cc is not None
    if not native:
        return _place(dest, lambda tmp: _write_text(tmp, text))
    if cc is None:
        raise RuntimeError("the native shim needs a C compiler (cc)")
    fallback = _place(fallback_path(dest), lambda tmp: _write_text(tmp, text))
    if host_root and fallback.startswith(host_root.rstrip("/") + "/"):
        fallback = fallback[len(host_root.rstrip("/")):]
    source = resources.files("multinet.native").joinpath("shim.c")
    with resources.as_file(source) as path:
        return _place(dest, lambda tmp: _compile(cc, str(path), tmp, fallback))


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _compile(cc: str, source: str, output: str, fallback: str) -> None:
    define = f'-DFALLBACK="{fallback}"'
    # Static, so a shim built in a container runs on any host.
    proc = subprocess.run([cc, "-O2", "-static", "-Wall", "-Wextra", "-Werror", define, "-o",
                           output, source], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"compiling the native shim failed: {proc.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m multinet.daemon.install",
                                     description="Install the multinet CNI shim launcher.")
    parser.add_argument("dest", help="where the runtime finds it, e.g. /opt/cni/bin/multinet")
    parser.add_argument("--python", default=sys.executable,
                        help="absolute path of the interpreter the launcher runs")
    parser.add_argument("--root", default=None, help="directory that holds the package")
    parser.add_argument("--native", action=argparse.BooleanOptionalAction, default=None,
                        help="the C shim in front (default: when a C compiler exists)")
    parser.add_argument("--host-root", default="",
                        help="where the host's filesystem is mounted, from a container")
    args = parser.parse_args(argv)
    print(install_shim(args.dest, args.python, args.root, args.native, args.host_root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
