"""Hand-written Kafka wire bits for tests that must send what no client would.

Only what test_bad_input.py needs: frames (4-byte big-endian size prefix),
request headers v1/v2, ApiVersions v0 responses, Produce v3..v8 requests and
responses (the non-flexible versions), and v2 record batches with CRC-32C.
Everything here follows Kafka's protocol guide and message JSON schemas;
nothing is taken from the broker under test.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

API_PRODUCE = 0
API_METADATA = 3
API_VERSIONS = 18

# Error codes (Kafka's Errors enum).
NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
UNSUPPORTED_VERSION = 35


# --- CRC-32C (Castagnoli), as record batches v2 use -----------------------------

def _crc32c_table() -> list[int]:
    poly = 0x82F63B78  # reflected 0x1EDC6F41
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c_py(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:  # the `crc32c` package from PyPI, when scripts/setup installed it
    from crc32c import crc32c as _crc32c_native
except ImportError:  # pragma: no cover - fallback is exercised by the self-check
    _crc32c_native = None


def crc32c(data: bytes) -> int:
    return _crc32c_native(data) if _crc32c_native else crc32c_py(data)


# --- primitive encoders -------------------------------------------------------

def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag signed varint (records use these for lengths and deltas)."""
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"short read: want {n} bytes at {self.pos}, have {len(self.data) - self.pos}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def i16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def string(self) -> str | None:
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def remaining(self) -> int:
        return len(self.data) - self.pos


# --- record batch v2 ----------------------------------------------------------

def record(offset_delta: int, key: bytes | None, value: bytes | None, timestamp_delta: int = 0) -> bytes:
    body = bytearray()
    body += i8(0)  # attributes
    body += varint(timestamp_delta)
    body += varint(offset_delta)
    for field in (key, value):
        if field is None:
            body += varint(-1)
        else:
            body += varint(len(field)) + field
    body += varint(0)  # headers
    return varint(len(body)) + bytes(body)


def record_batch(records: list[tuple[bytes | None, bytes | None]], base_timestamp: int | None = None) -> bytes:
    """A valid uncompressed v2 RecordBatch (base offset 0, no producer id)."""
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    recs = b"".join(record(i, k, v) for i, (k, v) in enumerate(records))
    after_crc = (
        i16(0)                       # attributes: no compression, create time
        + i32(len(records) - 1)      # lastOffsetDelta
        + i64(base_timestamp)        # baseTimestamp
        + i64(base_timestamp)        # maxTimestamp
        + i64(-1)                    # producerId
        + i16(-1)                    # producerEpoch
        + i32(-1)                    # baseSequence
        + i32(len(records))
        + recs
    )
    crc = crc32c(after_crc)
    after_length = i32(-1) + i8(2) + struct.pack(">I", crc) + after_crc  # leaderEpoch, magic, crc
    return i64(0) + i32(len(after_length)) + after_length


# --- requests and responses -----------------------------------------------------

def request_header_v1(
    api_key: int, api_version: int, correlation_id: int, client_id: str | None = "sluice-wire"
) -> bytes:
    return i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)


def request_header_v2(
    api_key: int, api_version: int, correlation_id: int, client_id: str | None = "sluice-wire"
) -> bytes:
    return request_header_v1(api_key, api_version, correlation_id, client_id) + uvarint(0)  # tagged fields


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def api_versions_v0_request(correlation_id: int) -> bytes:
    return request_header_v1(API_VERSIONS, 0, correlation_id)


def api_versions_flexible_request(version: int, correlation_id: int) -> bytes:
    """ApiVersions v3+ layout (header v2, compact strings, tagged fields) at any version number."""
    body = compact_string("sluice-wire") + compact_string("0.1") + uvarint(0)
    return request_header_v2(API_VERSIONS, version, correlation_id) + body


@dataclass
class ApiVersionsV0:
    correlation_id: int
    error_code: int
    api_keys: dict[int, tuple[int, int]]


def parse_api_versions_v0(payload: bytes) -> ApiVersionsV0:
    """ApiVersions response v0: header v0, error_code, [api_key, min, max] (no tagged fields)."""
    r = Reader(payload)
    corr = r.i32()
    err = r.i16()
    n = r.i32()
    keys = {}
    for _ in range(max(n, 0)):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        keys[k] = (lo, hi)
    return ApiVersionsV0(corr, err, keys)


def produce_request(version: int, correlation_id: int, topic: str, partition: int, records: bytes,
                    acks: int = -1, timeout_ms: int = 10000) -> bytes:
    """Produce v3..v8 (non-flexible): header v1 + body."""
    if not 3 <= version <= 8:
        raise ValueError("only the non-flexible Produce versions 3..8 are encoded here")
    body = (
        string(None)  # transactional_id
        + i16(acks)
        + i32(timeout_ms)
        + i32(1) + string(topic)
        + i32(1) + i32(partition) + i32(len(records)) + records
    )
    return request_header_v1(API_PRODUCE, version, correlation_id) + body


@dataclass
class PartitionProduceResponse:
    topic: str
    partition: int
    error_code: int
    base_offset: int
    error_message: str | None = None


def parse_produce_response(version: int, payload: bytes) -> tuple[int, list[PartitionProduceResponse]]:
    """Produce response v3..v8. Returns (correlation_id, partition responses)."""
    r = Reader(payload)
    corr = r.i32()
    out = []
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            index = r.i32()
            err = r.i16()
            base = r.i64()
            r.i64()  # log_append_time_ms (v2+)
            if version >= 5:
                r.i64()  # log_start_offset
            msg = None
            if version >= 8:
                for _ in range(max(r.i32(), 0)):  # record_errors
                    r.i32()
                    r.string()
                msg = r.string()
            out.append(PartitionProduceResponse(name, index, err, base, msg))
    r.i32()  # throttle_time_ms
    return corr, out


# --- a blocking connection with timeouts -----------------------------------------

class Closed(Exception):
    """The peer closed (or reset) the connection."""


class Conn:
    def __init__(self, bootstrap: str, timeout: float = 10.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_until_closed(self, data: bytes) -> None:
        """Sends, ignoring a peer that has already closed (for bad-input tests)."""
        try:
            self.sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            pass

    def send_frame(self, payload: bytes) -> None:
        self.send(frame(payload))

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise Closed(str(e)) from e
            if not chunk:
                raise Closed("EOF")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        size = struct.unpack(">i", self._recv_exact(4))[0]
        if size < 0 or size > 64 * 1024 * 1024:
            raise ValueError(f"implausible response size {size}")
        return self._recv_exact(size)

    def request(self, payload: bytes) -> bytes:
        self.send_frame(payload)
        return self.recv_frame()

    def wait_closed(self) -> bool:
        """Reads until the peer closes. True if it did (EOF or reset); False on
        timeout (socket timeout) or if the peer sent a response instead."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                return False  # got bytes: the peer answered instead of closing
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
