"""kiln: an ONNX inference runtime whose Python API is ONNX Runtime's.

``kiln.InferenceSession`` takes the same arguments and answers the same calls as
``onnxruntime.InferenceSession``; ``kiln.install_as_onnxruntime()`` makes every later
``import onnxruntime`` (and its ``capi`` submodules) resolve to kiln, so packages written
for ONNX Runtime run on kiln unchanged. ``kiln.genai`` is onnxruntime-genai's API for
generating text; ``kiln.install_as_onnxruntime_genai()`` does the same for ``import
onnxruntime_genai``.
"""
from ._kiln import (
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    KilnError,
    NoSuchFile,
    NotImplemented,
    RuntimeException,
)
from ._kiln import __version__
from ._api import (
    ExecutionMode,
    ExecutionOrder,
    FeedError,
    FeedTooLarge,
    GraphOptimizationLevel,
    InferenceSession,
    ModelMetadata,
    NodeArg,
    RunOptions,
    SessionOptions,
    get_all_providers,
    get_available_providers,
    get_device,
    set_default_logger_severity,
    set_default_logger_verbosity,
)
from ._switch import install_as_onnxruntime, install_as_onnxruntime_genai

__all__ = [
    "ExecutionMode",
    "ExecutionOrder",
    "Fail",
    "FeedError",
    "FeedTooLarge",
    "GraphOptimizationLevel",
    "InferenceSession",
    "InvalidArgument",
    "InvalidGraph",
    "InvalidProtobuf",
    "KilnError",
    "ModelMetadata",
    "NoSuchFile",
    "NodeArg",
    "RunOptions",
    "RuntimeException",
    "SessionOptions",
    "__version__",
    "get_all_providers",
    "get_available_providers",
    "get_device",
    "install_as_onnxruntime",
    "install_as_onnxruntime_genai",
    "set_default_logger_severity",
    "set_default_logger_verbosity",
]
