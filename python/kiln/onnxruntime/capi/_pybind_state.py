"""`onnxruntime.capi._pybind_state` on kiln: the functions, option classes and exception
classes client packages import from it. What kiln does not have (OrtValue, IOBinding, ...)
can be imported and raises `NotImplemented` when used."""
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
from kiln import __version__ as _kiln_version


# ONNX Runtime's other error classes: distinct, so that a client's `except EPFail` catches
# only what it means; kiln raises none of them.
class EPFail(Fail):
    pass


class EngineError(Fail):
    pass


class ModelLoaded(Fail):
    pass


class NoModel(NoSuchFile):
    pass


class _Missing:
    """A class of ONNX Runtime's that kiln does not have: importable, unusable."""

    def __init__(self, *args, **kwargs):
        raise NotImplemented(f"kiln has no {type(self).__name__}: pass numpy arrays to run()")


class OrtValue(_Missing):
    @staticmethod
    def ortvalue_from_numpy(*args, **kwargs):
        raise NotImplemented("kiln has no OrtValue: pass numpy arrays to run()")


class IOBinding(_Missing):
    pass


class SparseTensor(_Missing):
    pass


class OrtDevice(_Missing):
    pass


class OrtArenaCfg(_Missing):
    pass


class OrtMemType:
    CPU_INPUT = -2
    CPU_OUTPUT = -1
    CPU = -1
    DEFAULT = 0


class OrtAllocatorType:
    INVALID = -1
    ORT_DEVICE_ALLOCATOR = 0
    ORT_ARENA_ALLOCATOR = 1


def set_seed(seed):
    pass


def enable_telemetry_events():
    pass


def disable_telemetry_events():
    pass


def preload_dlls(*args, **kwargs):
    pass


def print_debug_info():
    print(f"kiln {_kiln_version}: onnxruntime's API on kiln's runtime")


def get_ep_devices():
    return []


def set_global_thread_pool_sizes(intra_op_num_threads, inter_op_num_threads):
    pass


def get_version_string():
    from kiln.onnxruntime import __version__

    return __version__


def get_build_info():
    return f"kiln {_kiln_version}"


def has_collective_ops():
    return False
