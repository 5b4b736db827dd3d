"""The `onnxruntime` namespace on kiln, which `kiln.install_as_onnxruntime()` installs.

`__version__` is the ONNX Runtime API level kiln follows, so that version checks in client
packages pass; kiln's own version is `__kiln_version__`.
"""
from kiln import (
    ExecutionMode,
    ExecutionOrder,
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
from kiln import __version__ as __kiln_version__

from . import capi
from .capi._pybind_state import (  # noqa: F401
    IOBinding,
    OrtAllocatorType,
    OrtArenaCfg,
    OrtDevice,
    OrtMemType,
    OrtValue,
    SparseTensor,
    disable_telemetry_events,
    enable_telemetry_events,
    get_ep_devices,
    preload_dlls,
    print_debug_info,
    set_global_thread_pool_sizes,
    set_seed,
)

__version__ = "1.31.1"


def get_version_string():
    return __version__


def get_build_info():
    return f"kiln {__kiln_version__} (onnxruntime API {__version__})"


def has_collective_ops():
    return False
