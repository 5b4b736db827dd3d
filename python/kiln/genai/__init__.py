"""kiln.genai: text generation with onnxruntime-genai's Python API, on kiln.

The model folders are the ones onnxruntime-genai's model builder writes (``genai_config.json``,
the ONNX model, ``tokenizer.json``). The classes answer the calls an ``onnxruntime_genai`` script
makes::

    model = og.Model(path)
    tokenizer = og.Tokenizer(model)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=64, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(tokenizer.encode("prompt"))
    while not generator.is_done():
        generator.generate_next_token()
        print(stream.decode(generator.get_next_tokens()[0]), end="")

``kiln.install_as_onnxruntime_genai()`` makes ``import onnxruntime_genai`` give this module.
"""
import numpy as np

from .. import _kiln

__all__ = [
    "Config",
    "Generator",
    "GeneratorParams",
    "Model",
    "Tokenizer",
    "TokenizerStream",
    "is_cuda_available",
    "set_log_options",
]

# The search options kiln's generator reads; onnxruntime-genai's others (beam search and its
# penalties) are refused by name rather than ignored.
_SEARCH = {"max_length", "min_length", "do_sample", "temperature", "top_k", "top_p",
           "repetition_penalty", "random_seed", "past_present_share_buffer"}
_NEUTRAL = {"num_beams": 1, "num_return_sequences": 1, "length_penalty": 1.0,
            "diversity_penalty": 0.0, "no_repeat_ngram_size": 0, "early_stopping": True}


class Config:
    """A model folder's configuration; kiln runs on the CPU, so provider calls are accepted and
    only CPU is used."""

    def __init__(self, path):
        self.path = str(path)
        self._threads = None

    def clear_providers(self):
        pass

    def append_provider(self, name):
        if name.lower() not in ("cpu", "cpuexecutionprovider"):
            raise RuntimeError(f"kiln.genai runs on the CPU; provider '{name}' is not available")

    def set_provider_option(self, provider, key, value):
        self.append_provider(provider)

    def overlay(self, json_text):
        raise NotImplementedError("Config.overlay is not supported by kiln.genai")


class Model:
    def __init__(self, config_or_path):
        cfg = config_or_path if isinstance(config_or_path, Config) else Config(config_or_path)
        self._native = _kiln.GenaiModel(cfg.path, cfg._threads)

    @property
    def type(self):
        return self._native.model_type

    @property
    def device_type(self):
        return "cpu"


class Tokenizer:
    def __init__(self, model):
        self._model = model._native

    def encode(self, text):
        return np.asarray(self._model.encode(text), dtype=np.int32)

    def encode_batch(self, texts):
        rows = [self._model.encode(t) for t in texts]
        width = max(map(len, rows), default=0)
        pad = self._model.pad_token_id
        return np.asarray([r + [pad] * (width - len(r)) for r in rows], dtype=np.int32)

    def decode(self, tokens):
        return self._model.decode([int(t) for t in np.asarray(tokens).reshape(-1)])

    def decode_batch(self, rows):
        return [self.decode(r) for r in rows]

    def create_stream(self):
        return TokenizerStream(self)

    def apply_chat_template(self, messages, *, template_str=None, tools=None, add_generation_prompt=True):
        """The prompt for `messages` (a JSON list of {role, content}, as onnxruntime-genai takes
        it; a Python list is accepted too) by the model folder's chat template."""
        text = messages if isinstance(messages, str) else _json(messages)
        return self._model.apply_chat_template(text, add_generation_prompt, template_str)

    @property
    def pad_token_id(self):
        return self._model.pad_token_id

    @property
    def eos_token_ids(self):
        return np.asarray(self._model.eos_token_ids, dtype=np.int32)

    def to_token_id(self, text):
        ids = self._model.encode_plain(text)
        if len(ids) != 1:
            raise RuntimeError(f"'{text}' is not one token")
        return ids[0]


class TokenizerStream:
    """Turns tokens, one at a time, into the text they add (a byte-level token may complete a
    character another one started)."""

    def __init__(self, tokenizer):
        self._stream = _kiln.GenaiStream(tokenizer._model)

    def decode(self, token):
        return self._stream.decode(int(token))


class GeneratorParams:
    def __init__(self, model):
        self._model = model
        self._options = {}

    def set_search_options(self, **options):
        for k, v in options.items():
            if k in _SEARCH:
                self._options[k] = v
            elif k in _NEUTRAL:
                if v != _NEUTRAL[k]:
                    raise RuntimeError(f"search option {k}={v!r} is not supported by kiln.genai "
                                       "(greedy and sampled search only)")
            else:
                raise RuntimeError(f"unknown search option '{k}'")

    def try_graph_capture_with_max_batch_size(self, n):
        pass


class Generator:
    def __init__(self, model, params):
        opts = {k: v for k, v in params._options.items() if k != "past_present_share_buffer"}
        self._native = _kiln.GenaiGenerator(model._native, **opts)
        self._pad = model._native.pad_token_id

    def append_tokens(self, tokens):
        arr = np.asarray(tokens)
        if arr.dtype == object or arr.ndim not in (1, 2) or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError("append_tokens takes a 1-D array of token ids, or a 2-D one per batch row")
        rows = [[int(t) for t in r] for r in (arr.reshape(1, -1) if arr.ndim == 1 else arr)]
        if arr.ndim == 2:
            # A batch comes padded on the right (Tokenizer.encode_batch): each row's own tokens.
            pad = self._pad
            for r in rows:
                while len(r) > 1 and r[-1] == pad:
                    r.pop()
        self._native.append_tokens(rows)

    def is_done(self):
        return self._native.is_done()

    def generate_next_token(self):
        self._native.generate_next_token()

    def get_next_tokens(self):
        return np.asarray(self._native.next_tokens(), dtype=np.int32)

    def get_sequence(self, index):
        return np.asarray(self._native.sequence(int(index)), dtype=np.int32)

    def token_count(self):
        return len(self._native.sequence(0))

    def rewind_to(self, length):
        raise NotImplementedError("Generator.rewind_to is not supported by kiln.genai")


def _json(value):
    import json
    return json.dumps(value)


def is_cuda_available():
    return False


def set_log_options(**options):
    pass
