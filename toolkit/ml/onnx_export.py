"""A trained model as one ONNX graph that takes the raw feature columns (`toolkit export`).

The preprocessing is inside the graph, as `Preprocessor.transform_table` does it, so any ONNX
runtime scores raw records with what `toolkit predict` gives:

    numeric column c   (double [N, 1], NaN = missing)  → (where(isnan(x), mean, x) − mean) / std, then float32
    categorical column (string [N, 1], its category key as GET /v1/model lists it; "", "?", "NA", … = missing)
                       → the most frequent training category where missing, then one column per
                         category (an unseen category: all zeros)
    → concat → the MLP's dense layers and activations in float32 → logits in double
    → `probabilities` (double [N, classes]: sigmoid as [1 − p, p], or softmax) and `label` (string [N]);
      a regressor: `value` (double [N, 1], in the label's units).

Numbers are computed in the same precision as the numpy path (double preprocessing, float32
network, double output), so the runtimes agree to float rounding (the tests hold onnxruntime to
1e-5 on every row). The opset is OPSET: string Equal needs 19.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from toolkit.errors import BadInputError, ToolkitError
from toolkit.ml.artifacts import ModelArtifact
from toolkit.ml.table import MISSING_TOKENS

OPSET = 19
ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}


def export_onnx(model: ModelArtifact, out: Path) -> dict:
    """Write `model` as ONNX to `out`; returns {opset, inputs, outputs, bytes}."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ToolkitError("ONNX export needs the onnx package: pip install 'toolkit[export]' (make setup installs it).") from None

    nodes, initializers, inputs = [], [], []

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs_: list[str], output: str, **attributes) -> str:
        nodes.append(helper.make_node(op, inputs_, [output], **attributes))
        return output

    parts = []
    preprocessor = model.preprocessor
    for spec in preprocessor.numeric:
        name = spec["name"]
        inputs.append(helper.make_tensor_value_info(name, TensorProto.DOUBLE, ["N", 1]))
        mean = constant(f"{name}.mean", np.array(spec["mean"], dtype=np.float64))
        filled = node("Where", [node("IsNaN", [name], f"{name}.missing"), mean, name], f"{name}.filled")
        scaled = node("Div", [node("Sub", [filled, mean], f"{name}.centred"), constant(f"{name}.std", np.array(spec["std"]))],
                      f"{name}.scaled")
        parts.append(node("Cast", [scaled], f"{name}.feature", to=TensorProto.FLOAT))
    for spec in preprocessor.categorical:
        name = spec["name"]
        inputs.append(helper.make_tensor_value_info(name, TensorProto.STRING, ["N", 1]))
        missing = node("Equal", [name, constant(f"{name}.missing_tokens", np.array(sorted(MISSING_TOKENS), dtype=object)[None, :])],
                       f"{name}.is_token")
        missing = node("Cast", [missing], f"{name}.token_float", to=TensorProto.FLOAT)
        missing = node("Cast", [node("ReduceMax", [missing, constant(f"{name}.axis", np.array([1], dtype=np.int64))], f"{name}.any_token",
                                     keepdims=1)], f"{name}.missing", to=TensorProto.BOOL)
        fill = constant(f"{name}.fill", np.array([[spec["fill"] or ""]], dtype=object))
        filled = node("Where", [missing, fill, name], f"{name}.filled")
        categories = constant(f"{name}.categories", np.array(spec["categories"], dtype=object)[None, :])
        parts.append(node("Cast", [node("Equal", [filled, categories], f"{name}.matches")], f"{name}.one_hot", to=TensorProto.FLOAT))
    x = node("Concat", parts, "features", axis=1) if len(parts) > 1 else parts[0]

    weights = model.model.weights()
    for index, layer in enumerate(model.manifest["architecture"]["layers"]):
        if layer["type"] == "dense":
            w = constant(f"layer{index}.W", weights[f"layer{index}.W"].astype(np.float32))
            b = constant(f"layer{index}.b", weights[f"layer{index}.b"].astype(np.float32))
            x = node("Add", [node("MatMul", [x, w], f"layer{index}.matmul"), b], f"layer{index}.out")
        elif layer["type"] in ACTIVATIONS:
            x = node(ACTIVATIONS[layer["type"]], [x], f"layer{index}.out")
        else:
            raise ToolkitError(f"layer type {layer['type']!r} has no ONNX export yet.")
    logits = node("Cast", [x], "logits", to=TensorProto.DOUBLE)
    if model.regression:  # the standardized value back in the label's units: · std + mean
        scaling = model.manifest["target_scaling"]
        node("Add", [node("Mul", [logits, constant("target.std", np.array(scaling["std"]))], "scaled_value"),
                     constant("target.mean", np.array(scaling["mean"]))], "value")
        outputs = [helper.make_tensor_value_info("value", TensorProto.DOUBLE, ["N", 1])]
    elif model.manifest["architecture"]["output"] == "sigmoid":
        positive = node("Sigmoid", [logits], "positive")
        probabilities = node("Concat", [node("Sub", [constant("one", np.array(1.0)), positive], "negative"), positive], "probabilities",
                             axis=1)
    else:
        probabilities = node("Softmax", [logits], "probabilities", axis=1)
    if not model.regression:
        node("Gather", [constant("classes", np.array(model.classes, dtype=object)),
                        node("ArgMax", [probabilities], "predicted", axis=1, keepdims=0)], "label", axis=0)
        outputs = [helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE, ["N", len(model.classes)]),
                   helper.make_tensor_value_info("label", TensorProto.STRING, ["N"])]
    graph = helper.make_graph(nodes, f"toolkit-{model.version}", inputs, outputs, initializers)
    document = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="toolkit",
                                 doc_string=f"model {model.version}: raw feature columns in, class probabilities and label out "
                                            "(toolkit/ml/onnx_export.py)")
    document.ir_version = 9  # what onnxruntime 1.32 reads for opset 19
    for key, value in (("toolkit.version", model.version), ("toolkit.classes", ",".join(model.classes)),
                       ("toolkit.label", model.manifest["label"])):
        document.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(document, full_check=True)
    partial = out.with_name(f".{out.name}.partial")  # a failed write leaves no half a model under the name
    try:
        partial.write_bytes(document.SerializeToString())
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BadInputError(f"{out}: cannot write it ({exc.strerror}).") from None
    return {"opset": OPSET, "inputs": [f"{i.name}: {'double' if i.type.tensor_type.elem_type == TensorProto.DOUBLE else 'string'}"
                                       for i in inputs],
            "outputs": [o.name for o in outputs], "bytes": out.stat().st_size}
