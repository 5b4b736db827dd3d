"""`onnxruntime.capi.onnxruntime_inference_collection` on kiln."""
from kiln import InferenceSession, NodeArg  # noqa: F401

Session = InferenceSession
