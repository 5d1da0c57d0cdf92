"""Raw HTTP/2 client for transport-flood tests: opens gRPC streams by hand (HEADERS frames with a
literal-only HPACK encoding) so a test can reset them at once (rapid reset) or leave them open
forever, which no well-behaved gRPC client library does. Loopback only; used with harness.Server."""

import socket
import struct
import threading

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
CANCEL, REFUSED_STREAM = 0x8, 0x7


def _int(value, prefix_bits, first=0):
    """HPACK integer with an N-bit prefix (RFC 7541 5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(name, value):
    """Literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    n, v = name.encode(), value.encode()
    return b"\x00" + _int(len(n), 7) + n + _int(len(v), 7) + v


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def grpc_headers(path, authority="localhost"):
    return b"".join(_literal(k, v) for k, v in [
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", authority),
        ("content-type", "application/grpc"), ("te", "trailers")])


class Conn:
    """One HTTP/2 connection. A background thread reads and discards the server's frames (acking
    SETTINGS and PING) and counts RST_STREAM(REFUSED_STREAM) and GOAWAY."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_id = 1
        self.refused = 0
        self.resets = 0
        self.reset_codes = {}
        self.goaway = False
        self.goaway_code = None
        self.closed = False
        self.max_streams = None
        self.got_settings = False
        self._wlock = threading.Lock()
        self.send(PREFACE + frame(SETTINGS, 0, 0))
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def send(self, data):
        """Writes frames; False once the server has closed the connection."""
        with self._wlock:
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                self.closed = True
                return False

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _read_loop(self):
        self.sock.settimeout(None)
        try:
            while True:
                hdr = self._recv_exact(9)
                length = int.from_bytes(hdr[:3], "big")
                ftype, flags = hdr[3], hdr[4]
                payload = self._recv_exact(length) if length else b""
                if ftype == SETTINGS and not flags & ACK:
                    self.got_settings = True
                    for i in range(0, len(payload), 6):
                        ident, val = struct.unpack(">HI", payload[i:i + 6])
                        if ident == 3:  # SETTINGS_MAX_CONCURRENT_STREAMS
                            self.max_streams = val
                    self.send(frame(SETTINGS, ACK, 0))
                elif ftype == PING and not flags & ACK:
                    self.send(frame(PING, ACK, 0, payload))
                elif ftype == RST_STREAM:
                    self.resets += 1
                    code = struct.unpack(">I", payload)[0]
                    self.reset_codes[code] = self.reset_codes.get(code, 0) + 1
                    if code == REFUSED_STREAM:
                        self.refused += 1
                elif ftype == GOAWAY:
                    self.goaway = True
                    self.goaway_code = struct.unpack(">I", payload[4:8])[0]
        except (OSError, EOFError):
            pass
        self.closed = True

    def open_stream(self, path, end_stream=False, reset=False, message=None):
        """HEADERS (and optionally a gRPC message, RST_STREAM(CANCEL)); returns the stream id."""
        sid = self.next_id
        self.next_id += 2
        out = frame(HEADERS, END_HEADERS | (END_STREAM if end_stream and message is None else 0), sid,
                    grpc_headers(path))
        if message is not None:
            out += frame(DATA, END_STREAM if end_stream else 0, sid, b"\x00" + struct.pack(">I", len(message)) + message)
        if reset:
            out += frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL))
        self.send(out)
        return sid

    def close(self):
        # shutdown first: close() alone leaves the connection up while the reader thread is
        # blocked in recv() on it.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
