"""`onnxruntime.capi.onnxruntime_pybind11_state` on kiln (the same names as `_pybind_state`)."""
from ._pybind_state import *  # noqa: F401,F403
from ._pybind_state import EngineError, EPFail, ModelLoaded, NoModel  # noqa: F401
