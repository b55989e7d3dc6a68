"""Installing the shim as the runtime's CNI binary: a launcher that starts fast.

The launcher runs the interpreter with `-IS`: isolated (no PYTHON* variables, no
user site, no script directory on sys.path) and without the site module, so
no site-packages directory is scanned at start. It then puts the directory that
holds the `multinet` package on sys.path itself. Only the in-process fallback
loads site-packages, when it needs the engine's dependencies.

    python -m multinet.daemon.install /opt/cni/bin/multinet [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

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


def install_shim(dest: str, python: str | None = None, root: str | None = None) -> str:
    """Write the launcher at `dest` atomically (a running shim keeps its old file).

    Returns `dest`.
    """
    text = launcher_text(python or sys.executable, root or package_root())
    directory = os.path.dirname(os.path.abspath(dest))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".multinet-shim-", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)  # never "text file busy": the old inode stays for its users
    except BaseException:
        os.unlink(tmp)
        raise
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m multinet.daemon.install",
                                     description="Install the multinet CNI shim launcher.")
    parser.add_argument("dest", help="where the runtime finds it, e.g. /opt/cni/bin/multinet")
    parser.add_argument("--python", default=sys.executable,
                        help="absolute path of the interpreter the launcher runs")
    parser.add_argument("--root", default=None, help="directory that holds the package")
    args = parser.parse_args(argv)
    print(install_shim(args.dest, args.python, args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
