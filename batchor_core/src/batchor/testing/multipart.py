"""Reading HTTP request bodies, including ``multipart/form-data`` uploads, as streams.

:func:`parse_multipart` writes the file part straight to disk in chunks, so an
upload of any size costs a fixed amount of memory; small form fields (like
``purpose``) are kept in memory up to :data:`MAX_FIELD_BYTES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from email.utils import collapse_rfc2231_value
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK_BYTES = 64 * 1024
MAX_FIELD_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024


class MultipartError(ValueError):
    """The request body is not well-formed ``multipart/form-data``."""


class ByteStream(Protocol):
    """A readable binary stream (a socket file, an open file...)."""

    def read(self, size: int, /) -> bytes: ...

    def readline(self, size: int, /) -> bytes: ...


class BodyReader(Protocol):
    def read(self, size: int) -> bytes:
        """Return up to ``size`` bytes of the body; ``b""`` at its end."""
        ...


class LengthReader:
    """A body delimited by ``Content-Length``."""

    def __init__(self, stream: ByteStream, length: int) -> None:
        self._stream = stream
        self._remaining = length

    def read(self, size: int) -> bytes:
        if self._remaining <= 0:
            return b""
        data = self._stream.read(min(size, self._remaining))
        if not data:
            raise MultipartError("The request body ended before Content-Length bytes were read.")
        self._remaining -= len(data)
        return data


class ChunkedReader:
    """A body sent with ``Transfer-Encoding: chunked``."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._left_in_chunk = 0
        self._done = False

    def read(self, size: int) -> bytes:
        if self._done:
            return b""
        if self._left_in_chunk == 0:
            line = self._stream.readline(1024)
            try:
                self._left_in_chunk = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise MultipartError(f"Bad chunk size line {line[:40]!r}.") from exc
            if self._left_in_chunk == 0:
                while self._stream.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                self._done = True
                return b""
        data = self._stream.read(min(size, self._left_in_chunk))
        if not data:
            raise MultipartError("The chunked request body ended early.")
        self._left_in_chunk -= len(data)
        if self._left_in_chunk == 0:
            self._stream.readline(1024)
        return data


def read_all(reader: BodyReader, limit: int) -> bytes:
    """Read a whole (small) body; more than ``limit`` bytes is an error."""
    parts: list[bytes] = []
    total = 0
    while chunk := reader.read(CHUNK_BYTES):
        total += len(chunk)
        if total > limit:
            drain(reader)
            raise MultipartError(f"The request body is larger than {limit} bytes.")
        parts.append(chunk)
    return b"".join(parts)


def drain(reader: BodyReader) -> None:
    """Read and discard the rest of a body, so the connection can be reused."""
    while reader.read(CHUNK_BYTES):
        pass


@dataclass(slots=True)
class UploadedFile:
    """The file part of a form: where it was written and how big it was."""

    filename: str
    path: Path
    size: int = 0
    too_large: bool = False


@dataclass(slots=True)
class MultipartForm:
    fields: dict[str, str] = field(default_factory=dict)
    file: UploadedFile | None = None


def boundary_of(content_type: str) -> bytes:
    """Return the boundary of a ``multipart/form-data`` content type, or raise."""
    message = Message()
    message["content-type"] = content_type
    if message.get_content_type() != "multipart/form-data":
        raise MultipartError("Expected a multipart/form-data request body.")
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise MultipartError("The multipart/form-data content type has no boundary.")
    return boundary.encode("latin-1")


class _Parser:
    def __init__(self, reader: BodyReader, boundary: bytes) -> None:
        self._reader = reader
        self._delimiter = b"\r\n--" + boundary
        self._buffer = b"\r\n"  # so the opening boundary looks like every other one

    def _fill(self) -> bool:
        data = self._reader.read(CHUNK_BYTES)
        self._buffer += data
        return bool(data)

    def skip_preamble(self) -> None:
        keep = len(self._delimiter) - 1
        while (index := self._buffer.find(self._delimiter)) < 0:
            self._buffer = self._buffer[-keep:]
            if not self._fill():
                raise MultipartError("No multipart boundary found in the request body.")
        self._buffer = self._buffer[index + len(self._delimiter) :]

    def at_end(self) -> bool:
        """After a boundary: True if it closed the body (``--``)."""
        while len(self._buffer) < 2:
            if not self._fill():
                raise MultipartError("The multipart body ended without its closing boundary.")
        if self._buffer.startswith(b"--"):
            return True
        while (index := self._buffer.find(b"\r\n")) < 0:
            if not self._fill():
                raise MultipartError("The multipart body ended inside a boundary line.")
        self._buffer = self._buffer[index + 2 :]
        return False

    def headers(self) -> Message:
        while (
            not self._buffer.startswith(b"\r\n") and (index := self._buffer.find(b"\r\n\r\n")) < 0
        ):
            if len(self._buffer) > MAX_HEADER_BYTES or not self._fill():
                raise MultipartError("Unreadable headers in a multipart part.")
        message = Message()
        if self._buffer.startswith(b"\r\n"):
            self._buffer = self._buffer[2:]
            return message
        block, self._buffer = self._buffer[:index], self._buffer[index + 4 :]
        for line in block.decode("utf-8", errors="replace").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip():
                message[name.strip()] = value.strip()
        return message

    def read_part(self, sink: _Sink) -> None:
        """Pass the current part's body to ``sink`` up to the next boundary."""
        keep = len(self._delimiter) - 1
        while (index := self._buffer.find(self._delimiter)) < 0:
            if len(self._buffer) > keep:
                sink.write(self._buffer[:-keep])
                self._buffer = self._buffer[-keep:]
            if not self._fill():
                raise MultipartError("The multipart body ended inside a part.")
        if index:
            sink.write(self._buffer[:index])
        self._buffer = self._buffer[index + len(self._delimiter) :]


class _Sink(Protocol):
    def write(self, data: bytes) -> None: ...


class _FieldSink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data
        if len(self.data) > MAX_FIELD_BYTES:
            raise MultipartError(f"A form field is larger than {MAX_FIELD_BYTES} bytes.")


class _FileSink:
    def __init__(self, stream: BinaryIO, uploaded: UploadedFile, max_bytes: int) -> None:
        self._stream = stream
        self._uploaded = uploaded
        self._max_bytes = max_bytes

    def write(self, data: bytes) -> None:
        self._uploaded.size += len(data)
        if self._uploaded.size > self._max_bytes:
            self._uploaded.too_large = True
        if not self._uploaded.too_large:
            self._stream.write(data)


class _DiscardSink:
    def write(self, data: bytes) -> None:
        pass


def _disposition_param(headers: Message, param: str) -> str | None:
    value = headers.get_param(param, header="content-disposition")
    if isinstance(value, tuple):
        return collapse_rfc2231_value(value)
    return value


def parse_multipart(
    reader: BodyReader,
    boundary: bytes,
    *,
    file_field: str,
    file_path: Path,
    max_file_bytes: int,
) -> MultipartForm:
    """Parse a multipart body: fields into memory, the ``file_field`` file part to ``file_path``.

    A file larger than ``max_file_bytes`` is read to its end but not kept
    (``too_large`` is set and ``file_path`` holds only a prefix). The whole body is
    consumed either way, so the connection stays usable.
    """
    form = MultipartForm()
    parser = _Parser(reader, boundary)
    try:
        parser.skip_preamble()
        while not parser.at_end():
            headers = parser.headers()
            name = _disposition_param(headers, "name")
            filename = _disposition_param(headers, "filename")
            if not isinstance(name, str):
                parser.read_part(_DiscardSink())
            elif isinstance(filename, str) and name == file_field and form.file is None:
                form.file = UploadedFile(filename=filename, path=file_path)
                with file_path.open("wb") as stream:
                    parser.read_part(_FileSink(stream, form.file, max_file_bytes))
            elif filename is None:
                sink = _FieldSink()
                parser.read_part(sink)
                form.fields[name] = sink.data.decode("utf-8", errors="replace")
            else:
                parser.read_part(_DiscardSink())
    finally:
        drain(reader)
    return form
