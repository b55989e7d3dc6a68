"""Python stubs for the CRI RuntimeService subset in cri.proto, made at test time.

grpcio-tools (a test dependency) compiles cri.proto into a temporary directory
the first time `stubs()` is called in a process. Generating instead of committing
the output keeps one source of truth: the stubs always match the proto and the
protobuf runtime that is installed, and there is no generated code to review.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from functools import cache
from types import ModuleType

PROTO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cri.proto")


def _load(name: str, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the grpc module imports the messages by this name
    spec.loader.exec_module(module)
    return module


@cache
def stubs() -> tuple[ModuleType, ModuleType]:
    """(messages, services): the modules protoc writes as cri_pb2 and cri_pb2_grpc."""
    from importlib.resources import files

    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="multinet-cri-stubs-")
    well_known = str(files("grpc_tools").joinpath("_proto"))
    code = protoc.main(["grpc_tools.protoc", f"-I{os.path.dirname(PROTO)}", f"-I{well_known}",
                        f"--python_out={out}", f"--grpc_python_out={out}", PROTO])
    if code != 0:
        raise RuntimeError(f"protoc could not compile {PROTO} (exit {code})")
    try:
        messages = _load("cri_pb2", os.path.join(out, "cri_pb2.py"))
        services = _load("cri_pb2_grpc", os.path.join(out, "cri_pb2_grpc.py"))
    finally:
        shutil.rmtree(out, ignore_errors=True)  # the modules are loaded: files not needed
    return messages, services
