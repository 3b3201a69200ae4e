"""ARM's frozen TensorFlow DS-CNN graphs (``DS_CNN_{S,M,L}.pb``) → this zoo's DS-CNN parameters.

No TensorFlow is needed: a frozen graph is a ``GraphDef`` protocol buffer, and the few messages it
uses (nodes, their attributes, constant tensors) are decoded here straight from the protobuf wire
format (:func:`read_graph`).

The graph is read by its structure, not by its scope names: from the ``Mfcc`` node the data path is
followed consumer by consumer and must be

    Reshape, Reshape (to [-1, frames, mfcc, 1]),
    Conv2D, BiasAdd, FusedBatchNorm, Relu,
    (DepthwiseConv2dNative, BiasAdd, FusedBatchNorm, Relu, Conv2D 1×1, BiasAdd, FusedBatchNorm, Relu) × N,
    AvgPool over the whole map, Squeeze, MatMul, BiasAdd, Softmax

(``Identity`` nodes are skipped).  Every attribute that changes the numbers — strides, SAME padding,
kernel shapes, channels, BatchNorm epsilon, the spectrogram's window and stride, the MFCC's
coefficients, channels and frequency limits, the decoded clip length — is compared with the config,
and every difference is reported at once (:class:`ConversionError`).

Layouts: TensorFlow keeps convolution kernels as HWIO ``(k_t, k_f, C_in, C_out)`` (depthwise:
``(k_t, k_f, C, 1)``) and the fully connected weights as ``(C_in, classes)``; MindSpore wants
``(C_out, C_in / groups, k_t, k_f)`` and ``(classes, C_in)``.  BatchNorm's scale (a constant 1 in
ARM's graphs: slim has no trainable γ), offset, moving mean and moving variance fill ``gamma``,
``beta``, ``moving_mean`` and ``moving_variance``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["ConversionError", "GraphNode", "GraphConv", "GraphArchitecture", "read_graph", "parse_graph",
           "describe_graph", "check_architecture", "convert_graph", "convert_pb", "read_labels", "check_labels"]


class ConversionError(ValueError):
    """A graph that does not map one-to-one onto the model of the config."""


# ---------------------------------------------------------------------------------------------
# Protobuf wire format: just enough of GraphDef / NodeDef / AttrValue / TensorProto
# ---------------------------------------------------------------------------------------------

# TensorFlow DataType enum values → numpy dtypes (the ones a frozen float graph holds)
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
           10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ConversionError("truncated protobuf (varint runs past the end)")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ConversionError("corrupt protobuf (varint too long)")


def _fields(buf: bytes) -> Iterable[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message: ints for varints, bytes for length-delimited
    fields, raw 4/8-byte little-endian bytes for fixed32/fixed64."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise ConversionError("truncated protobuf (field runs past the end)")
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        else:
            raise ConversionError(f"unsupported protobuf wire type {wire}: not a GraphDef?")
        yield number, wire, value


def _signed(v: int) -> int:
    """A varint read as int64 (two's complement)."""
    return v - (1 << 64) if v >= 1 << 63 else v


def _packed(values: list, wire: int, raw: Any, fmt: str | None) -> None:
    """Append a repeated scalar that may be packed (bytes) or not (one value)."""
    if wire == 2:
        if fmt is None:                      # packed varints
            pos = 0
            while pos < len(raw):
                v, pos = _varint(raw, pos)
                values.append(_signed(v))
        else:
            values.extend(struct.unpack(f"<{len(raw) // struct.calcsize(fmt)}{fmt}", raw))
    elif wire == 0:
        values.append(_signed(raw))
    else:
        values.append(struct.unpack(f"<{fmt}", raw)[0])


def _shape(buf: bytes) -> list[int]:
    """TensorShapeProto → dims (-1 for unknown)."""
    dims = []
    for number, _, value in _fields(buf):
        if number == 2:                                   # Dim
            size = 0
            for n, _, v in _fields(value):
                if n == 1:
                    size = _signed(v)
            dims.append(size)
    return dims


def _tensor(buf: bytes) -> np.ndarray:
    """TensorProto → numpy array (tensor_content, or the typed *_val lists, where one value fills
    the whole shape as TensorFlow allows)."""
    dtype_code, dims, content = 1, [], None
    vals: dict[str, list] = {"f": [], "d": [], "i": [], "l": [], "b": []}
    for number, wire, value in _fields(buf):
        if number == 1:
            dtype_code = value
        elif number == 2:
            dims = _shape(value)
        elif number == 4:
            content = value
        elif number == 5:
            _packed(vals["f"], wire, value, "f")
        elif number == 6:
            _packed(vals["d"], wire, value, "d")
        elif number == 7:
            _packed(vals["i"], wire, value, None)
        elif number == 10:
            _packed(vals["l"], wire, value, None)
        elif number == 11:
            _packed(vals["b"], wire, value, None)
    if dtype_code not in _DTYPES:
        raise ConversionError(f"constant of unsupported TensorFlow dtype {dtype_code}")
    dtype = np.dtype(_DTYPES[dtype_code])
    count = int(np.prod(dims)) if dims else 1
    if content is not None and len(content):
        array = np.frombuffer(content, dtype=dtype.newbyteorder("<")).astype(dtype)
    else:
        listed = vals["f"] or vals["d"] or vals["i"] or vals["l"] or vals["b"]
        array = np.asarray(listed, dtype=dtype)
        if 0 < array.size < count:                        # the last value repeats to fill the shape
            array = np.concatenate([array, np.full(count - array.size, array[-1], dtype)])
        elif array.size == 0:
            array = np.zeros(count, dtype)
    if array.size != count:
        raise ConversionError(f"constant holds {array.size} values for shape {dims}")
    return array.reshape(dims)


def _attr_list(buf: bytes) -> list:
    """AttrValue.ListValue → the list of its (single kind of) values."""
    out: list = []
    for number, wire, value in _fields(buf):
        if number == 2:
            out.append(bytes(value).decode("utf-8", "replace"))
        elif number == 3:
            _packed(out, wire, value, None)
        elif number == 4:
            _packed(out, wire, value, "f")
        elif number == 5:
            tmp: list = []
            _packed(tmp, wire, value, None)
            out.extend(bool(v) for v in tmp)
        elif number == 7:
            out.append(_shape(value))
    return out


def _attr(buf: bytes) -> Any:
    """AttrValue → a Python value (str, int, float, bool, dtype code, shape list, ndarray or list)."""
    for number, wire, value in _fields(buf):
        if number == 1:
            return _attr_list(value)
        if number == 2:
            return bytes(value).decode("utf-8", "replace")
        if number == 3:
            return _signed(value)
        if number == 4:
            return struct.unpack("<f", value)[0]
        if number == 5:
            return bool(value)
        if number == 6:
            return int(value)
        if number == 7:
            return _shape(value)
        if number == 8:
            return _tensor(value)
    return None


@dataclass
class GraphNode:
    """One NodeDef: ``inputs`` without ``:0`` suffixes of output 0 (control inputs keep their ``^``)."""
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)


def _node(buf: bytes) -> GraphNode:
    node = GraphNode("", "")
    for number, _, value in _fields(buf):
        if number == 1:
            node.name = bytes(value).decode()
        elif number == 2:
            node.op = bytes(value).decode()
        elif number == 3:
            ref = bytes(value).decode()
            node.inputs.append(ref[:-2] if ref.endswith(":0") else ref)
        elif number == 5:                                 # map<string, AttrValue> entry
            key, attr = "", None
            for n, _, v in _fields(value):
                if n == 1:
                    key = bytes(v).decode()
                elif n == 2:
                    attr = _attr(v)
            node.attrs[key] = attr
    return node


def parse_graph(data: bytes) -> list[GraphNode]:
    """The nodes of a serialised GraphDef, in file order."""
    nodes = [_node(value) for number, wire, value in _fields(data) if number == 1 and wire == 2]
    if not nodes or not all(n.name and n.op for n in nodes):
        raise ConversionError("no TensorFlow graph nodes found: is this a frozen GraphDef (.pb)?")
    return nodes


def read_graph(path: str | Path) -> list[GraphNode]:
    """The nodes of a frozen graph file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frozen graph not found: {path}")
    try:
        return parse_graph(path.read_bytes())
    except ConversionError as e:
        raise ConversionError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------------------------
# The DS-CNN in a graph
# ---------------------------------------------------------------------------------------------

@dataclass
class GraphConv:
    """A convolution found in the graph with its bias and BatchNorm constants (TensorFlow layouts)."""
    node: str
    kernel: np.ndarray
    stride: tuple[int, int]
    bias: np.ndarray
    bn: dict[str, np.ndarray]
    bn_eps: float
    depthwise: bool


@dataclass
class GraphArchitecture:
    """What a frozen DS-CNN graph computes: its front end, its layers and its tensors."""
    front_end: dict[str, Any]           # desired_samples, window_size, stride, magnitude_squared, mfcc attrs
    input_shape: tuple[int, int]        # (frames, mfcc) the model reshapes its input to
    first: GraphConv
    blocks: list[tuple[GraphConv, GraphConv]]  # (depthwise, pointwise)
    pool: tuple[int, int]
    fc_weight: np.ndarray               # (C, classes)
    fc_bias: np.ndarray
    output_node: str

    @property
    def num_classes(self) -> int:
        return int(self.fc_weight.shape[1])

    @property
    def model_size_info(self) -> tuple[int, ...]:
        """The layers in ARM's ``--model_size_info`` notation."""
        layers = [(int(self.first.kernel.shape[3]), self.first.kernel.shape[:2], self.first.stride)]
        layers += [(int(pw.kernel.shape[3]), dw.kernel.shape[:2], dw.stride) for dw, pw in self.blocks]
        return (len(layers),) + tuple(int(v) for f, k, s in layers for v in (f, *k, *s))


class _Graph:
    def __init__(self, nodes: list[GraphNode]) -> None:
        self.by_name = {n.name: n for n in nodes}
        if len(self.by_name) != len(nodes):
            raise ConversionError("the graph has duplicate node names")
        self.consumers: dict[str, list[GraphNode]] = {}
        for n in nodes:
            for ref in n.inputs:
                if not ref.startswith("^"):
                    self.consumers.setdefault(ref, []).append(n)
        self.nodes = nodes

    def one(self, op: str) -> GraphNode:
        found = [n for n in self.nodes if n.op == op]
        if len(found) != 1:
            raise ConversionError(f"expected one {op} node in the graph, found {len(found)}")
        return found[0]

    def const(self, ref: str) -> np.ndarray:
        """The value of a constant input, through Identity nodes."""
        node = self.by_name.get(ref.split(":")[0])
        while node is not None and node.op == "Identity":
            node = self.by_name.get(node.inputs[0].split(":")[0])
        if node is None or node.op != "Const":
            raise ConversionError(f"input {ref!r} is not a constant of the frozen graph")
        return node.attrs["value"]

    def next_on_path(self, node: GraphNode) -> GraphNode:
        """The node that takes ``node``'s output 0 as its data input (Identity nodes skipped)."""
        users = [n for n in self.consumers.get(node.name, []) if n.inputs and n.inputs[0] == node.name]
        if len(users) != 1:
            raise ConversionError(f"node {node.name!r} ({node.op}) feeds {len(users)} nodes; expected a single "
                                  "chain of layers")
        return self.next_on_path(users[0]) if users[0].op == "Identity" else users[0]


def _expect(node: GraphNode, *ops: str) -> GraphNode:
    if node.op not in ops:
        raise ConversionError(f"node {node.name!r} is {node.op}, expected {' or '.join(ops)}: not ARM's DS-CNN")
    return node


def _hw(values: list, what: str, node: GraphNode) -> tuple[int, int]:
    if len(values) != 4 or values[0] != 1 or values[3] != 1:
        raise ConversionError(f"{node.name}: unexpected {what} {values}")
    return int(values[1]), int(values[2])


def _conv_layer(g: _Graph, conv: GraphNode) -> tuple[GraphConv, GraphNode]:
    """A Conv2D / DepthwiseConv2dNative → BiasAdd → FusedBatchNorm → Relu run; returns it and the Relu."""
    depthwise = conv.op == "DepthwiseConv2dNative"
    for key, want in (("data_format", "NHWC"), ("padding", "SAME")):
        if conv.attrs.get(key, want) != want:
            raise ConversionError(f"{conv.name}: {key} {conv.attrs.get(key)!r}, expected {want!r}")
    if any(d != 1 for d in conv.attrs.get("dilations", [1, 1, 1, 1])):
        raise ConversionError(f"{conv.name}: dilated convolutions are not part of DS-CNN")
    stride = _hw(conv.attrs.get("strides", []), "strides", conv)
    kernel = np.asarray(g.const(conv.inputs[1]), np.float32)
    if kernel.ndim != 4 or (depthwise and kernel.shape[3] != 1):
        raise ConversionError(f"{conv.name}: kernel of shape {kernel.shape} is not a {'depthwise ' * depthwise}"
                              "convolution kernel (depth multiplier 1)")
    bias_add = _expect(g.next_on_path(conv), "BiasAdd")
    bn = _expect(g.next_on_path(bias_add), "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
    if bn.attrs.get("is_training", False):
        raise ConversionError(f"{bn.name}: BatchNorm in training mode; freeze the graph for inference")
    scale, offset, mean, var = (np.asarray(g.const(ref), np.float32) for ref in bn.inputs[1:5])
    relu = _expect(g.next_on_path(bn), "Relu")
    layer = GraphConv(conv.name, kernel, stride, np.asarray(g.const(bias_add.inputs[1]), np.float32),
                  {"gamma": scale, "beta": offset, "moving_mean": mean, "moving_variance": var},
                  float(bn.attrs.get("epsilon", 1e-4)), depthwise)
    return layer, relu


def describe_graph(nodes: list[GraphNode]) -> GraphArchitecture:
    """Follow the data path of an ARM DS-CNN frozen graph; ConversionError if it is something else."""
    g = _Graph(nodes)
    decode, spectrogram, mfcc = g.one("DecodeWav"), g.one("AudioSpectrogram"), g.one("Mfcc")
    front_end = {
        "desired_samples": decode.attrs.get("desired_samples", -1),
        "desired_channels": decode.attrs.get("desired_channels", -1),
        "window_size": spectrogram.attrs.get("window_size"),
        "stride": spectrogram.attrs.get("stride"),
        "magnitude_squared": spectrogram.attrs.get("magnitude_squared", False),
        # the Mfcc op's defaults where an attribute is absent
        "dct_coefficient_count": mfcc.attrs.get("dct_coefficient_count", 13),
        "filterbank_channel_count": mfcc.attrs.get("filterbank_channel_count", 40),
        "lower_frequency_limit": mfcc.attrs.get("lower_frequency_limit", 20.0),
        "upper_frequency_limit": mfcc.attrs.get("upper_frequency_limit", 4000.0),
    }
    node = g.next_on_path(mfcc)
    while node.op == "Reshape":
        target = [int(v) for v in np.asarray(g.const(node.inputs[1])).ravel()]
        last_reshape, node = target, g.next_on_path(node)
    if node.op != "Conv2D" or len(last_reshape) != 4 or last_reshape[3] != 1:
        raise ConversionError(f"the MFCC is not reshaped into a one-channel image before a Conv2D (found {node.op})")
    input_shape = (last_reshape[1], last_reshape[2])
    first, relu = _conv_layer(g, node)
    if first.kernel.shape[2] != 1:
        raise ConversionError(f"{first.node}: the first convolution takes {first.kernel.shape[2]} channels, not 1")
    blocks = []
    node = g.next_on_path(relu)
    while node.op == "DepthwiseConv2dNative":
        dw, relu = _conv_layer(g, node)
        pw, relu = _conv_layer(g, _expect(g.next_on_path(relu), "Conv2D"))
        if pw.kernel.shape[:2] != (1, 1) or pw.stride != (1, 1):
            raise ConversionError(f"{pw.node}: the pointwise convolution is {pw.kernel.shape[:2]} with stride "
                                  f"{pw.stride}, expected 1x1 with stride 1")
        blocks.append((dw, pw))
        node = g.next_on_path(relu)
    pool = _expect(node, "AvgPool")
    if pool.attrs.get("padding") != "VALID":
        raise ConversionError(f"{pool.name}: padding {pool.attrs.get('padding')!r}, expected 'VALID'")
    ksize = _hw(pool.attrs.get("ksize", []), "ksize", pool)
    squeeze = _expect(g.next_on_path(pool), "Squeeze", "Reshape")
    matmul = _expect(g.next_on_path(squeeze), "MatMul")
    if matmul.attrs.get("transpose_a") or matmul.attrs.get("transpose_b"):
        raise ConversionError(f"{matmul.name}: transposed MatMul is not expected")
    bias_add = _expect(g.next_on_path(matmul), "BiasAdd")
    output = _expect(g.next_on_path(bias_add), "Softmax")
    return GraphArchitecture(front_end, input_shape, first, blocks, ksize,
                             np.asarray(g.const(matmul.inputs[1]), np.float32),
                             np.asarray(g.const(bias_add.inputs[1]), np.float32), output.name)


def _same_size(size: int, stride: int) -> int:
    return -(-size // stride)


def check_architecture(arch: GraphArchitecture, config: Any, num_classes: int | None = None) -> None:
    """Raise ConversionError listing every way the graph differs from ``config`` (features, model,
    clip length and, with ``num_classes``, the number of outputs)."""
    problems: list[str] = []
    fc, model = config.features, config.model

    def differ(what: str, graph_value: Any, config_value: Any) -> None:
        if isinstance(graph_value, float) or isinstance(config_value, float):
            same = np.isclose(float(graph_value), float(config_value), rtol=1e-6, atol=1e-9)
        else:
            same = graph_value == config_value
        if not same:
            problems.append(f"{what}: graph {graph_value!r}, config {config_value!r}")

    if getattr(model, "name", None) != "dscnn":
        raise ConversionError(f"--config builds model.name={getattr(model, 'name', None)!r}; ARM's graphs are "
                              "DS-CNNs (use src/configs/dscnn_{s,m,l}.yaml)")
    fe = arch.front_end
    differ("features.kind", "mfcc", fc.kind)
    clip = int(fc.sample_rate * config.kws.clip_duration_ms / 1000)
    differ("decoded clip samples (features.sample_rate x kws.clip_duration_ms)", fe["desired_samples"], clip)
    differ("decoded channels", fe["desired_channels"], 1)
    differ("features.win_length (AudioSpectrogram window_size)", fe["window_size"], fc.win_length)
    differ("features.hop_length (AudioSpectrogram stride)", fe["stride"], fc.hop_length)
    differ("AudioSpectrogram magnitude_squared", fe["magnitude_squared"], True)
    if fe["window_size"]:
        differ("features.n_fft (next power of two of the window)", 1 << (int(fe["window_size"]) - 1).bit_length(),
               fc.n_fft)
    differ("features.n_mfcc (Mfcc dct_coefficient_count)", fe["dct_coefficient_count"], fc.n_mfcc)
    differ("features.n_mels (Mfcc filterbank_channel_count)", fe["filterbank_channel_count"], fc.n_mels)
    differ("features.fmin (Mfcc lower_frequency_limit)", float(fe["lower_frequency_limit"]), float(fc.fmin))
    differ("features.fmax (Mfcc upper_frequency_limit)", float(fe["upper_frequency_limit"]),
           float(fc.fmax if fc.fmax > 0 else fc.sample_rate / 2))
    frames = 1 + (clip - fc.win_length) // fc.hop_length if clip >= fc.win_length else 0
    differ("model input (frames, mfcc)", arch.input_shape, (model.input_frames, fc.n_mfcc))
    differ("model.input_frames (frames of one clip)", model.input_frames, frames)

    def conv_shape(where: str, conv: GraphConv, kernel: tuple, stride: tuple) -> None:
        differ(f"{where}.kernel", tuple(int(v) for v in conv.kernel.shape[:2]), tuple(kernel))
        differ(f"{where}.stride", conv.stride, tuple(stride))
        differ(f"model.bn_eps ({conv.node})", conv.bn_eps, model.bn_eps)

    cfg_layers, graph_layers = len(model.blocks) + 1, len(arch.blocks) + 1
    if cfg_layers != graph_layers:
        problems.append(f"number of layers: graph {graph_layers} (first conv + {len(arch.blocks)} depthwise-"
                        f"separable blocks), config {cfg_layers}")
    differ("model.first.filters", int(arch.first.kernel.shape[3]), model.first.filters)
    conv_shape("model.first", arch.first, model.first.kernel, model.first.stride)
    for i, ((dw, pw), block) in enumerate(zip(arch.blocks, model.blocks)):
        differ(f"model.blocks[{i}].filters", int(pw.kernel.shape[3]), block.filters)
        conv_shape(f"model.blocks[{i}]", dw, block.kernel, block.stride)
        differ(f"model.bn_eps ({pw.node})", pw.bn_eps, model.bn_eps)
    size = arch.input_shape
    for stride in [arch.first.stride] + [dw.stride for dw, _ in arch.blocks]:
        size = (_same_size(size[0], stride[0]), _same_size(size[1], stride[1]))
    if arch.pool != size:
        problems.append(f"the average pool covers {arch.pool}, not the whole final map {size}")
    if num_classes is not None:
        differ("number of classes (len(kws.labels))", arch.num_classes, num_classes)
    if problems:
        raise ConversionError("the frozen graph does not match --config:\n  " + "\n  ".join(problems))


def convert_graph(arch: GraphArchitecture, expected: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The model's parameters (name → float32 array in MindSpore's layout) from a checked graph;
    every expected parameter filled once with its exact shape, or ConversionError."""
    out: dict[str, np.ndarray] = {}

    def put(name: str, value: np.ndarray) -> None:
        if name in out:
            raise ConversionError(f"{name} filled twice")
        out[name] = np.ascontiguousarray(value, dtype=np.float32)

    def conv(prefix: str, layer: GraphConv) -> None:
        # HWIO (k_t, k_f, C_in, C_out) → (C_out, C_in, k_t, k_f); depthwise (k_t, k_f, C, 1) → (C, 1, k_t, k_f)
        put(f"{prefix}.weight", layer.kernel.transpose(2, 3, 0, 1) if layer.depthwise
            else layer.kernel.transpose(3, 2, 0, 1))
        put(f"{prefix}.bias", layer.bias)

    def bn(prefix: str, layer: GraphConv) -> None:
        for key, value in layer.bn.items():
            put(f"{prefix}.{key}", value)

    conv("first.conv", arch.first)
    bn("first.bn", arch.first)
    for i, (dw, pw) in enumerate(arch.blocks):
        conv(f"blocks.{i}.depthwise", dw)
        bn(f"blocks.{i}.dw_bn", dw)
        conv(f"blocks.{i}.pointwise", pw)
        bn(f"blocks.{i}.pw_bn", pw)
    put("fc.weight", arch.fc_weight.T)
    put("fc.bias", arch.fc_bias)
    problems = [f"{name}: graph gives {out[name].shape}, model needs {tuple(shape)}"
                for name, shape in expected.items() if name in out and out[name].shape != tuple(shape)]
    missing = sorted(set(expected) - set(out))
    extra = sorted(set(out) - set(expected))
    if missing:
        problems.append(f"model parameters the graph does not fill: {missing[:8]}")
    if extra:
        problems.append(f"graph tensors with no place in the model: {extra[:8]}")
    if problems:
        raise ConversionError("the graph's tensors do not fit the model:\n  " + "\n  ".join(problems))
    return out


def read_labels(path: str | Path) -> list[str]:
    """A labels file: one class name a line, in output order (blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def check_labels(graph_labels: list[str], config_labels: Iterable[str]) -> None:
    """The graph's class order must be the config's ``kws.labels``."""
    config_labels = list(config_labels)
    if graph_labels != config_labels:
        raise ConversionError(f"the graph's labels {graph_labels} are not the config's kws.labels {config_labels} "
                              "(_silence_, _unknown_, then kws.wanted_words in this order); set kws.wanted_words "
                              "to the graph's words")


def convert_pb(path: str | Path, config: Any, expected: Mapping[str, tuple[int, ...]],
               labels: list[str] | None = None) -> tuple[dict[str, np.ndarray], GraphArchitecture]:
    """Read, check against ``config`` (and ``labels`` against ``config.kws.labels``) and convert."""
    arch = describe_graph(read_graph(path))
    config_labels = list(config.kws.labels)
    check_architecture(arch, config, num_classes=len(config_labels))
    if labels is not None:
        check_labels(labels, config_labels)
    return convert_graph(arch, expected), arch
