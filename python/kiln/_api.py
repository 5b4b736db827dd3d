"""ONNX Runtime's Python API over kiln's native session.

Options that kiln has no use for (arenas, memory patterns, execution mode, logging levels,
config entries) are accepted, stored and reported back, and change nothing.
"""
import enum
import os
import tempfile
import warnings

import numpy as np

from . import _kiln

_CPU = "CPUExecutionProvider"

# ONNX Runtime's provider names, for get_all_providers().
_ALL_PROVIDERS = [
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "MIGraphXExecutionProvider",
    "ROCMExecutionProvider",
    "OpenVINOExecutionProvider",
    "DnnlExecutionProvider",
    "VitisAIExecutionProvider",
    "QNNExecutionProvider",
    "NnapiExecutionProvider",
    "VSINPUExecutionProvider",
    "JsExecutionProvider",
    "CoreMLExecutionProvider",
    "ArmNNExecutionProvider",
    "ACLExecutionProvider",
    "DmlExecutionProvider",
    "RknpuExecutionProvider",
    "WebNNExecutionProvider",
    "WebGpuExecutionProvider",
    "XnnpackExecutionProvider",
    "CANNExecutionProvider",
    "AzureExecutionProvider",
    "CPUExecutionProvider",
]

# numpy dtypes of ONNX Runtime's tensor type names, for converting list and scalar feeds.
_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}

_logger_severity = 2
_logger_verbosity = 0


def set_default_logger_severity(severity):
    """Accepted for compatibility: kiln logs nothing while it runs."""
    global _logger_severity
    _logger_severity = int(severity)


def set_default_logger_verbosity(verbosity):
    global _logger_verbosity
    _logger_verbosity = int(verbosity)


def get_available_providers():
    """The providers this build of kiln has, in priority order (ONNX Runtime's names)."""
    return list(_kiln.available_providers())


def get_all_providers():
    return list(_ALL_PROVIDERS)


def get_device():
    return "CPU"


class FeedError(_kiln.InvalidArgument, RuntimeError):
    """A feed that cannot be made into a tensor (a dict, a ragged list, a bare scalar for an
    input that is not one, a complex, datetime or structured array): ONNX Runtime raises
    RuntimeError or InvalidArgument for these, depending on the case; kiln's is both."""


class FeedTooLarge(MemoryError, RuntimeError):
    """A feed whose C-ordered copy would not fit in the memory left (a view with zero strides
    can look like terabytes): a MemoryError as numpy raises, and a RuntimeError as ORT does."""


# numpy kinds kiln takes: floats, signed and unsigned integers, bools and strings.
_FEED_KINDS = set("fiubUSO")


class GraphOptimizationLevel(enum.IntEnum):
    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class ExecutionOrder(enum.IntEnum):
    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2


def _level_name(level):
    """kiln's optimization level for ONNX Runtime's (the layout level is kiln's `all`)."""
    level = int(level)
    if level <= 0:
        return "disabled"
    if level == 1:
        return "basic"
    if level == 2:
        return "extended"
    return "all"


class SessionOptions:
    """ONNX Runtime's session options. kiln acts on `graph_optimization_level`,
    `intra_op_num_threads` and `optimized_model_filepath`; the rest are kept and ignored.
    kiln's own `precision` ("f32", the default, or "bf16": matrix products in bfloat16 with
    f32 sums, on CPUs with AVX512-BF16) can also be set as the config entry
    `kiln.precision`."""

    def __init__(self):
        self.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.intra_op_num_threads = 0
        self.inter_op_num_threads = 0
        self.optimized_model_filepath = ""
        self.execution_mode = ExecutionMode.ORT_SEQUENTIAL
        self.execution_order = ExecutionOrder.DEFAULT
        self.log_severity_level = 2
        self.log_verbosity_level = 0
        self.logid = ""
        self.enable_cpu_mem_arena = True
        self.enable_mem_pattern = True
        self.enable_mem_reuse = True
        self.enable_profiling = False
        self.profile_file_prefix = "onnxruntime_profile_"
        self.use_deterministic_compute = False
        self.precision = "f32"
        self._config = {}
        self._free_dims = {}

    def add_session_config_entry(self, key, value):
        self._config[str(key)] = str(value)

    def get_session_config_entry(self, key):
        if key not in self._config:
            raise _kiln.InvalidArgument(f"SessionOptions has no config entry '{key}'")
        return self._config[key]

    def add_free_dimension_override_by_name(self, name, value):
        self._free_dims[str(name)] = int(value)

    def add_free_dimension_override_by_denotation(self, denotation, value):
        self._free_dims[str(denotation)] = int(value)

    def register_custom_ops_library(self, path):
        raise _kiln.NotImplemented(
            f"kiln cannot load custom operator libraries ({path}): its kernels are built in"
        )

    def add_initializer(self, name, value):
        raise _kiln.NotImplemented("SessionOptions.add_initializer is not supported by kiln")

    def add_external_initializers(self, names, values):
        raise _kiln.NotImplemented(
            "SessionOptions.add_external_initializers is not supported by kiln"
        )


class RunOptions:
    """ONNX Runtime's run options: `terminate` stops a run before it starts; the rest are
    kept and ignored."""

    def __init__(self):
        self.log_severity_level = 2
        self.log_verbosity_level = 0
        self.logid = ""
        self.terminate = False
        self.only_execute_path_to_fetches = False
        self._config = {}

    def add_run_config_entry(self, key, value):
        self._config[str(key)] = str(value)

    def get_run_config_entry(self, key):
        if key not in self._config:
            raise _kiln.InvalidArgument(f"RunOptions has no config entry '{key}'")
        return self._config[key]


class NodeArg:
    """An input or output of the model: `name`, `type` (`'tensor(float)'`, ...) and `shape`
    (ints, strings for named dimensions, None for unknown ones)."""

    def __init__(self, name, type, shape):
        self.name = name
        self.type = type
        self.shape = shape

    def __repr__(self):
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


class ModelMetadata:
    def __init__(self, d):
        self.producer_name = d["producer_name"]
        self.graph_name = d["graph_name"]
        self.domain = d["domain"]
        self.description = d["description"]
        self.graph_description = d["graph_description"]
        self.version = d["version"]
        self.custom_metadata_map = dict(d["custom_metadata_map"])


def _provider_list(providers, provider_options):
    """(name, options) pairs kiln has, warning about and dropping the others as ONNX
    Runtime does for providers its build lacks."""
    if providers is None:
        return [(_CPU, {})]
    if provider_options is not None and len(provider_options) != len(providers):
        raise ValueError(
            "'providers' and 'provider_options' should be the same length if both are given."
        )
    available = get_available_providers()
    out = []
    for i, p in enumerate(providers):
        if isinstance(p, (tuple, list)):
            name, opts = p[0], dict(p[1]) if len(p) > 1 and p[1] is not None else {}
        else:
            name, opts = p, {}
        if provider_options is not None:
            opts.update(provider_options[i] or {})
        if not isinstance(name, str):
            raise ValueError(f"a provider must be a name or a (name, options) pair, not {p!r}")
        if name not in available:
            warnings.warn(
                f"Specified provider '{name}' is not in available provider names. "
                f"Available providers: '{', '.join(available)}'"
            )
            continue
        out.append((name, {str(k): str(v) for k, v in opts.items()}))
    return out or [(_CPU, {})]


class InferenceSession:
    """`onnxruntime.InferenceSession` on kiln."""

    def __init__(
        self, path_or_bytes, sess_options=None, providers=None, provider_options=None, **kwargs
    ):
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            self._model_path = None
            self._model_bytes = bytes(path_or_bytes)
        elif isinstance(path_or_bytes, (str, os.PathLike)):
            self._model_path = os.fspath(path_or_bytes)
            self._model_bytes = None
            if not os.path.exists(self._model_path):
                raise _kiln.NoSuchFile(f"Load model from {self._model_path} failed: File doesn't exist")
        else:
            raise TypeError(f"Unable to load from type '{type(path_or_bytes)}'")
        self._sess_options = sess_options if sess_options is not None else SessionOptions()
        self._create(providers, provider_options)

    def _create(self, providers, provider_options):
        opts = self._sess_options
        wanted = _provider_list(providers, provider_options)
        threads = int(opts.intra_op_num_threads or 0)
        gpu = any(n != _CPU for n, _ in wanted)
        if gpu:
            # Vulkan drivers want a session directory even when headless.
            os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
        try:
            self._sess = self._make(opts, threads, wanted)
        except _kiln.KilnError as e:
            if not gpu:
                raise
            # A provider the build has but the machine cannot start (no GPU adapter): fall back
            # to the CPU with a warning, as ONNX Runtime does.
            warnings.warn(f"{e}; falling back to ['{_CPU}']")
            wanted = [(_CPU, {})]
            self._sess = self._make(opts, threads, [])
        self._provider_options = {n: o for n, o in wanted}
        for n in self._sess.providers():
            self._provider_options.setdefault(n, {})
        self._inputs_meta = [NodeArg(*a) for a in self._sess.inputs()]
        self._outputs_meta = [NodeArg(*a) for a in self._sess.outputs()]
        self._overridable_meta = [NodeArg(*a) for a in self._sess.overridable()]
        self._types = {a.name: a.type for a in self._inputs_meta + self._overridable_meta}
        self._ranks = {
            a.name: len(a.shape)
            for a in self._inputs_meta + self._overridable_meta
            if isinstance(a.shape, list)
        }

    def _make(self, opts, threads, eps):
        model = self._model_bytes if self._model_bytes is not None else self._model_path
        return _kiln.Session(
            model,
            level=_level_name(opts.graph_optimization_level),
            threads=threads if threads > 0 else None,
            providers=eps,
            optimized_path=opts.optimized_model_filepath or None,
            precision=opts._config.get("kiln.precision", getattr(opts, "precision", "f32")),
        )

    def get_inputs(self):
        return list(self._inputs_meta)

    def get_outputs(self):
        return list(self._outputs_meta)

    def get_overridable_initializers(self):
        return list(self._overridable_meta)

    def get_providers(self):
        return list(self._sess.providers())

    def get_provider_options(self):
        return {n: dict(o) for n, o in self._provider_options.items()}

    def get_session_options(self):
        return self._sess_options

    def get_modelmeta(self):
        return ModelMetadata(self._sess.metadata())

    def set_providers(self, providers=None, provider_options=None):
        self._create(providers, provider_options)

    def disable_fallback(self):
        pass

    def enable_fallback(self):
        pass

    def end_profiling(self):
        """kiln writes no ONNX Runtime profile; the name of none is the empty string."""
        return ""

    def get_profiling_start_time_ns(self):
        return 0

    def io_binding(self):
        raise _kiln.NotImplemented("kiln has no IOBinding: pass numpy arrays to run()")

    def run_with_ort_values(self, output_names, input_dict_ort_values, run_options=None):
        raise _kiln.NotImplemented("kiln has no OrtValue: pass numpy arrays to run()")

    def _feed(self, name, value):
        if not isinstance(value, np.ndarray):
            rank = self._ranks.get(name)
            if not (np.isscalar(value) or isinstance(value, (list, tuple))):
                raise FeedError(f"input '{name}': cannot make a tensor of {type(value).__name__}")
            if np.isscalar(value) and rank not in (None, 0):
                raise FeedError(
                    f"input '{name}': a bare {type(value).__name__} is no tensor of rank {rank}"
                )
            want = _NUMPY_TYPES.get(self._types.get(name))
            try:
                value = np.asarray(value) if want is None else np.asarray(value, dtype=want)
            except (TypeError, ValueError, OverflowError) as e:
                raise FeedError(f"input '{name}': cannot make a tensor of {type(value).__name__}: {e}") from e
        if value.dtype.kind not in _FEED_KINDS:
            raise FeedError(f"input '{name}': numpy dtype {value.dtype} has no ONNX tensor type kiln takes")
        if not (value.flags.c_contiguous and value.flags.aligned):
            # Fortran order, strided views and misaligned fields, as a C-ordered copy; a view
            # larger than the memory left (zero strides make a few bytes look like terabytes)
            # raises rather than fill memory until the process is killed.
            # (Reading the limit costs about 90 us: only for feeds past 16 MiB.)
            limit = _kiln.memory_limit() if value.nbytes > (16 << 20) else None
            if limit is not None and value.nbytes > limit:
                raise FeedTooLarge(
                    f"input '{name}': a C-ordered copy of {value.nbytes} bytes is over the "
                    f"memory limit of {limit} bytes"
                )
            value = np.array(value, order="C")
        return value

    def run(self, output_names, input_feed, run_options=None):
        """The outputs named (all of them for None or []), as numpy arrays, in that order."""
        if run_options is not None and getattr(run_options, "terminate", False):
            raise _kiln.Fail("Exiting due to terminate flag being set to true.")
        if not hasattr(input_feed, "items"):
            raise TypeError(f"input_feed must be a dict of input name to value, not {type(input_feed)}")
        if isinstance(output_names, (str, bytes)):
            raise TypeError("output_names must be a list of names or None, not a string")
        # As ONNX Runtime: a feed of None is no feed, and optional inputs may be left out.
        input_feed = {k: v for k, v in input_feed.items() if v is not None}
        missing = [
            a.name
            for a in self._inputs_meta
            if a.name not in input_feed and not a.type.startswith("optional")
        ]
        if missing:
            raise ValueError(
                f"Required inputs ({missing}) are missing from input feed ({list(input_feed)})."
            )
        known = self._types
        for name in input_feed:
            if name not in known:
                raise _kiln.InvalidArgument(
                    f"Invalid input name: {name} (the model's inputs: "
                    f"{', '.join(a.name for a in self._inputs_meta)})"
                )
        feeds = {name: self._feed(name, v) for name, v in input_feed.items()}
        return self._sess.run(list(output_names) if output_names else None, feeds)
