"""The kubelet PodResources v1 gRPC API (service ``v1.PodResourcesLister``).

``api.proto`` holds the API definition; ``api_pb2.py``, ``api_pb2.pyi`` and
``api_pb2_grpc.py`` are generated from it and must not be edited by hand. The
proto is compiled with its path from the repository root so that its descriptor
is registered under a unique file name (``multinet/k8s/podresources/api.proto``).

To regenerate, from the repository root, with a grpcio-tools that bundles
protobuf 6.x (1.73.0 was used: the generated code then needs protobuf>=6.31.0 and
grpcio>=1.73.0):

    python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \\
        multinet/k8s/podresources/api.proto
    sed -i 's/^from multinet\\.k8s\\.podresources import api_pb2 as/from . import api_pb2 as/' \\
        multinet/k8s/podresources/api_pb2_grpc.py

The ``sed`` keeps the import package-relative. A newer grpcio-tools raises both
minimums to the versions it bundles.
"""

from . import api_pb2, api_pb2_grpc

__all__ = ["api_pb2", "api_pb2_grpc"]
