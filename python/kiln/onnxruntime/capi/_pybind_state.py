"""`onnxruntime.capi._pybind_state` on kiln: the functions, option classes and exception
classes client packages import from it."""
from kiln import (
    ExecutionMode,
    ExecutionOrder,
    Fail,
    GraphOptimizationLevel,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    KilnError,
    ModelMetadata,
    NodeArg,
    NoSuchFile,
    NotImplemented,
    RunOptions,
    RuntimeException,
    SessionOptions,
    get_all_providers,
    get_available_providers,
    get_device,
    set_default_logger_severity,
    set_default_logger_verbosity,
)

# ONNX Runtime's other error classes, as kiln's nearest ones.
EPFail = Fail
EngineError = Fail
ModelLoaded = Fail
NoModel = NoSuchFile
