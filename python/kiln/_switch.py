"""`install_as_onnxruntime()`: every later `import onnxruntime` (and `onnxruntime.capi...`)
gets kiln's compatible module, `kiln.onnxruntime`, so packages written for ONNX Runtime run on
kiln unchanged."""
import importlib
import importlib.abc
import importlib.util
import sys
import warnings

_PREFIX = "onnxruntime"
_TARGET = "kiln.onnxruntime"


class _Alias(importlib.abc.Loader):
    """Loads `onnxruntime.X` as the already importable `kiln.onnxruntime.X`."""

    def __init__(self, target):
        self._target = target

    def create_module(self, spec):
        return importlib.import_module(self._target)

    def exec_module(self, module):
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != _PREFIX and not fullname.startswith(_PREFIX + "."):
            return None
        aliased = _TARGET + fullname[len(_PREFIX):]
        if importlib.util.find_spec(aliased) is None:
            return None
        spec = importlib.util.spec_from_loader(fullname, _Alias(aliased))
        if fullname == _PREFIX or importlib.util.find_spec(aliased).submodule_search_locations:
            spec.submodule_search_locations = []
        return spec


def install_as_onnxruntime_genai():
    """Makes `import onnxruntime_genai` resolve to `kiln.genai` from now on, in this interpreter,
    so a script written for onnxruntime-genai generates with kiln."""
    current = sys.modules.get("onnxruntime_genai")
    if current is not None and not getattr(current, "__name__", "").startswith("kiln"):
        warnings.warn(
            "install_as_onnxruntime_genai(): onnxruntime_genai was imported before; modules that "
            "hold it keep it, later imports get kiln.genai."
        )
    compat = importlib.import_module("kiln.genai")
    sys.modules["onnxruntime_genai"] = compat
    return compat


def install_as_onnxruntime():
    """Makes `import onnxruntime` resolve to kiln from now on, in this interpreter. Modules that
    already imported ONNX Runtime keep the one they have."""
    current = sys.modules.get(_PREFIX)
    if current is not None and not getattr(current, "__name__", "").startswith("kiln"):
        warnings.warn(
            "install_as_onnxruntime(): onnxruntime was imported before; modules that hold it keep "
            "ONNX Runtime, later imports get kiln. Call it before anything imports onnxruntime."
        )
    for name in [n for n in sys.modules if n == _PREFIX or n.startswith(_PREFIX + ".")]:
        del sys.modules[name]
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    compat = importlib.import_module(_TARGET)
    sys.modules[_PREFIX] = compat
    for sub in (
        "capi",
        "capi._pybind_state",
        "capi.onnxruntime_pybind11_state",
        "capi.onnxruntime_inference_collection",
    ):
        sys.modules[f"{_PREFIX}.{sub}"] = importlib.import_module(f"{_TARGET}.{sub}")
    return compat
