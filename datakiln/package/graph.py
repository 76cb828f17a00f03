"""Checking an ONNX graph before onnxruntime loads it: no tensor may live outside the package.

An ONNX tensor can keep its bytes in an external file (``data_location = EXTERNAL`` with a
``location``); onnxruntime, given the graph as bytes, resolves such a name against the current
directory, so a package whose hashes verify could read any file the caller can and return its
bytes through its outputs. Every tensor in the model is checked (initializers, sparse
initializers, attribute tensors, subgraphs, functions, training graphs) by walking the protobuf
wire format directly: importing the ``onnx`` package costs a second, which prediction must not pay.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import BadPackage

MAX_DEPTH = 64  # nested messages: a real graph nests a few levels; a hostile one may nest thousands

# Message field numbers (onnx.proto): which fields hold messages that may hold tensors.
MODEL = {7: "graph", 20: "training", 25: "function"}
TRAINING = {1: "graph", 2: "graph"}
GRAPH = {1: "node", 5: "tensor", 15: "sparse"}
NODE = {5: "attribute"}
FUNCTION = {7: "node", 11: "attribute"}
ATTRIBUTE = {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"}
SPARSE = {1: "tensor", 2: "tensor"}
KINDS = {
    "graph": GRAPH,
    "training": TRAINING,
    "function": FUNCTION,
    "node": NODE,
    "attribute": ATTRIBUTE,
    "sparse": SPARSE,
}
TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 13, 14


def check_graph(data: bytes, where: str) -> None:
    """Raise ``BadPackage`` if any tensor of the ONNX model in ``data`` keeps its data elsewhere."""
    try:
        _walk(memoryview(data), MODEL, 0, where)
    except (IndexError, ValueError) as e:
        raise BadPackage(f"{where} is not a valid ONNX model ({e}); rebuild the package") from None


def _walk(buf: memoryview, fields: dict[int, str], depth: int, where: str) -> None:
    if depth > MAX_DEPTH:
        raise BadPackage(f"{where} nests messages more than {MAX_DEPTH} deep; refusing it")
    for number, wire, value in _fields(buf):
        kind = fields.get(number)
        if kind is None or wire != 2:
            continue
        assert isinstance(value, memoryview)
        if kind == "tensor":
            _check_tensor(value, where)
        else:
            _walk(value, KINDS[kind], depth + 1, where)


def _check_tensor(buf: memoryview, where: str) -> None:
    for number, wire, value in _fields(buf):
        if number == TENSOR_EXTERNAL_DATA or (number == TENSOR_DATA_LOCATION and wire == 0 and value != 0):
            raise BadPackage(
                f"{where} has a tensor whose data lives in an external file; a package must hold all of its "
                "weights (such a graph could read files from the caller's disk). Rebuild the package"
            )


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of each field of a protobuf message; length-delimited
    values are views, never copies, so skipping a 100 MB tensor costs nothing."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise ValueError("a field runs past the end of its message")
            yield number, wire, buf[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"wire type {wire} is not used by ONNX")
        if pos > end:
            raise ValueError("a field runs past the end of its message")


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint is longer than 10 bytes")
