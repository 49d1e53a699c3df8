"""Protobuf wire format, as far as onnxprune needs it: walking a message's fields
without parsing their payloads (a model's weights stay where they lie), writing a
length-delimited field by hand, and copying a message but one field."""

from __future__ import annotations

import mmap
from collections.abc import Iterator

from google.protobuf.message import DecodeError

# field numbers of onnx.proto: ModelProto.graph, GraphProto.initializer, and TensorProto's
MODEL_GRAPH, GRAPH_INITIALIZER = 7, 5
TENSOR_RAW_DATA, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 9, 13, 14


def read_varint(buf: mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise DecodeError("truncated or malformed varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def fields(buf: mmap.mmap, begin: int, stop: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, start of the field, start of its payload, end) of each
    field of the protobuf message at buf[begin:stop]."""
    pos = begin
    while pos < stop:
        start = pos
        key, pos = read_varint(buf, pos, stop)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise DecodeError("field number 0")
        if wire == 0:
            _, end = read_varint(buf, pos, stop)
        elif wire == 1:
            end = pos + 8
        elif wire == 2:
            length, pos = read_varint(buf, pos, stop)
            end = pos + length
        elif wire == 5:
            end = pos + 4
        else:
            raise DecodeError(f"unsupported wire type {wire}")
        if end > stop:
            raise DecodeError("truncated message")
        yield field, wire, start, pos, end
        pos = end


def varint_bytes(value: int) -> bytes:
    """`value` as a protobuf varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def copy_without(message, skipped: str, empty):
    """A copy of `message` without the field `skipped` (not copied, however large)."""
    for field, value in message.ListFields():
        if field.name == skipped:
            continue
        if is_repeated(field):
            getattr(empty, field.name).extend(value)
        elif field.type == field.TYPE_MESSAGE:
            getattr(empty, field.name).CopyFrom(value)
        else:
            setattr(empty, field.name, value)
    return empty


def is_repeated(field) -> bool:
    flag = getattr(field, "is_repeated", None)  # newer protobuf; `label` before
    return bool(flag) if flag is not None else field.label == field.LABEL_REPEATED


def field_header(number: int, length: int) -> bytes:
    """The key and length of a length-delimited field (wire type 2)."""
    return varint_bytes(number << 3 | 2) + varint_bytes(length)
