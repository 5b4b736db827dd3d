"""Generate the ONNX node conformance suite from the pinned onnx package.

The installed onnx wheel ships the Python generators of its backend node tests
(`onnx.backend.test.case.node`) but not the generated data.  This script runs
those generators and writes, for every case, `<out>/<case>/model.onnx` plus
`test_data_set_<i>/input_<j>.pb` / `output_<j>.pb`, using the same on-disk
layout and protobuf encodings as onnx's own test data (TensorProto for tensors,
SequenceProto for sequences, OptionalProto for optionals — an absent optional is
elem_type UNDEFINED with no value — and MapProto for maps).  numpy's global RNG
is seeded so reruns produce identical bytes.  Usage: gen_conformance.py OUT_DIR
(OUT_DIR must not exist yet; the caller moves it into place atomically).
"""

import os
import sys
import warnings

import numpy as np
import onnx
from onnx import numpy_helper

SEQ_KIND = {"tensor_type": onnx.SequenceProto.TENSOR,
            "sparse_tensor_type": onnx.SequenceProto.SPARSE_TENSOR,
            "sequence_type": onnx.SequenceProto.SEQUENCE,
            "map_type": onnx.SequenceProto.MAP,
            "optional_type": onnx.SequenceProto.OPTIONAL}


def to_tensor(value, name):
    if isinstance(value, onnx.TensorProto):
        t = onnx.TensorProto()
        t.CopyFrom(value)
        if name:
            t.name = name
        return t
    return numpy_helper.from_array(np.asarray(value), name)


def to_sequence(value, elem_type_proto, name):
    seq = onnx.SequenceProto()
    if name:
        seq.name = name
    kind = elem_type_proto.WhichOneof("value") if elem_type_proto is not None else None
    if kind is None:  # type not declared: infer from the first element like onnx does
        kind = ("map_type" if value and isinstance(value[0], dict)
                else "sequence_type" if value and isinstance(value[0], list)
                else "tensor_type")
    seq.elem_type = SEQ_KIND[kind]
    inner = getattr(elem_type_proto, kind) if elem_type_proto is not None else None
    for item in value:
        if kind == "tensor_type":
            seq.tensor_values.append(to_tensor(item, ""))
        elif kind == "sequence_type":
            seq.sequence_values.append(to_sequence(item, inner.elem_type if inner else None, ""))
        elif kind == "map_type":
            seq.map_values.append(numpy_helper.from_dict(item))
        else:
            raise TypeError(f"unsupported sequence element kind {kind}")
    return seq


def encode(value, type_proto, name):
    """Encode one input/output value as the protobuf message its declared type calls for."""
    kind = type_proto.WhichOneof("value")
    if kind == "map_type":
        return numpy_helper.from_dict(value, name)
    if kind == "sequence_type":
        return to_sequence(value, type_proto.sequence_type.elem_type, name)
    if kind == "optional_type":
        opt = onnx.OptionalProto()
        opt.name = name
        if value is None:
            opt.elem_type = onnx.OptionalProto.UNDEFINED
            return opt
        elem = type_proto.optional_type.elem_type
        ekind = elem.WhichOneof("value") or ("sequence_type" if isinstance(value, list) else "tensor_type")
        if ekind == "sequence_type":
            opt.elem_type = onnx.OptionalProto.SEQUENCE
            opt.sequence_value.CopyFrom(to_sequence(value, elem.sequence_type.elem_type, ""))
        elif ekind == "tensor_type":
            opt.elem_type = onnx.OptionalProto.TENSOR
            opt.tensor_value.CopyFrom(to_tensor(value, ""))
        else:
            raise TypeError(f"{name}: unsupported optional element kind {ekind}")
        return opt
    if kind == "tensor_type":
        return to_tensor(value, name)
    raise TypeError(f"{name}: unsupported value kind {kind}")


def write_case(root, case):
    case_dir = os.path.join(root, case.name)
    os.makedirs(case_dir)
    with open(os.path.join(case_dir, "model.onnx"), "wb") as f:
        f.write(case.model.SerializeToString())
    graph = case.model.graph
    for i, (inputs, outputs) in enumerate(case.data_sets):
        ds = os.path.join(case_dir, f"test_data_set_{i}")
        os.makedirs(ds)
        for prefix, values, infos in (("input", inputs, graph.input), ("output", outputs, graph.output)):
            for j, value in enumerate(values):
                msg = encode(value, infos[j].type, infos[j].name)
                with open(os.path.join(ds, f"{prefix}_{j}.pb"), "wb") as f:
                    f.write(msg.SerializeToString())


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_conformance.py OUT_DIR")
    out = sys.argv[1]
    np.random.seed(0)
    warnings.simplefilter("ignore")  # generators emit numpy overflow/divide warnings on purpose
    from onnx.backend.test.case.node import collect_testcases

    cases = collect_testcases()
    os.makedirs(out)
    for case in cases:
        write_case(out, case)
    print(len(cases))


if __name__ == "__main__":
    main()
