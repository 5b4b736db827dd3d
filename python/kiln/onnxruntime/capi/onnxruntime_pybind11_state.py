"""`onnxruntime.capi.onnxruntime_pybind11_state` on kiln (the same names as `_pybind_state`)."""
from ._pybind_state import *  # noqa: F401,F403
from ._pybind_state import (  # noqa: F401
    EngineError,
    EPFail,
    IOBinding,
    ModelLoaded,
    NoModel,
    OrtDevice,
    OrtValue,
    SparseTensor,
)
