"""The Gemini Developer API's Files API and batch mode, as the local server speaks it.

:class:`GeminiApi` is mounted on the shared HTTP server under :data:`PREFIX`
(``http://HOST:PORT/gemini``: pass it as ``HttpOptions(base_url=...)`` or
``GEMINI_BASE_URL``), so its ``/{version}/files`` and ``/{version}/batches`` never
meet OpenAI's ``/v1/files`` and ``/v1/batches``. Any version segment is accepted
(the ``google-genai`` SDK sends ``v1`` by default, Google's docs show ``v1beta``).

Each route maps to one :class:`~batchor.testing.gemini_store.GeminiStore`
operation. Calls carry the key in ``x-goog-api-key`` (or ``?key=``), except the
chunks of a resumable upload, which the SDK sends without it (their upload id is
the credential). Errors are in Google's envelope ``{"error": {code, message,
status, details}}``, and every error reply carries ``x-goog-upload-status:
final`` so that an upload chunk refused mid-way fails at once instead of being
retried by the SDK.
"""

from __future__ import annotations

import json
import re
from typing import Any

from batchor.testing.context import ServerContext
from batchor.testing.faults import InjectedHttpError
from batchor.testing.gemini_store import (
    GeminiFile,
    GeminiStore,
    GoogleApiError,
    invalid_argument,
    not_found,
)
from batchor.testing.multipart import read_all
from batchor.testing.routing import ApiError, Call, JsonReply, Reply, Route, StreamReply, route

PREFIX = "/gemini"
"""Where the Gemini API hangs from on the local server."""

MAX_JSON_BODY_BYTES = 20 * 1024 * 1024
"""The largest JSON body taken (the API's limit on a create with inline requests)."""

MAX_CHUNK_BYTES = 64 * 1024 * 1024
"""The largest upload chunk taken (the SDK sends 8 MiB)."""

_VERSION = re.compile(r"^v\d+[a-z0-9]*$")

CANONICAL_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
"""The ``google.rpc.Code`` name Google's envelope gives each HTTP status."""

_INJECTED_MESSAGES = {
    429: "You exceeded your current quota, please check your plan and billing details. For "
    "more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}
"""How Google words an injected status."""

_MISSING_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)


def _id_of(name: str, collection: str) -> str:
    """``abc`` of ``files/abc`` (or of ``abc``)."""
    return name.removeprefix(f"{collection}/")


class GeminiApi:
    """Gemini's Files and batch routes under :data:`PREFIX`, backed by one
    :class:`GeminiStore`.

    ``api_key``: ``None`` accepts any key; a string requires exactly that key.
    """

    def __init__(self, context: ServerContext, *, api_key: str | None) -> None:
        self.store = GeminiStore(context)
        self.api_key = api_key
        p = PREFIX
        self.routes: tuple[Route, ...] = (
            route("POST", f"{p}/upload/{{version}}/files", self.upload),
            route("GET", f"{p}/{{version}}/files", self.list_files),
            route("GET", f"{p}/{{version}}/files/{{id}}:download", self.download),
            route("GET", f"{p}/download/{{version}}/files/{{id}}:download", self.download),
            route("GET", f"{p}/{{version}}/files/{{id}}", self.get_file),
            route("DELETE", f"{p}/{{version}}/files/{{id}}", self.delete_file),
            route(
                "POST", f"{p}/{{version}}/models/{{model}}:batchGenerateContent", self.create_batch
            ),
            route("GET", f"{p}/{{version}}/batches", self.list_batches),
            route("POST", f"{p}/{{version}}/batches/{{id}}:cancel", self.cancel_batch),
            route("GET", f"{p}/{{version}}/batches/{{id}}", self.get_batch),
            route("DELETE", f"{p}/{{version}}/batches/{{id}}", self.delete_batch),
        )

    # ------------------------------------------------------------ as a provider API

    def owns(self, path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    def authenticate(self, call: Call) -> None:
        if call.method == "POST" and "upload_id" in call.query:
            return  # an upload chunk: the SDK sends no key, the upload id is the credential
        key = (call.headers.get("x-goog-api-key") or call.query.get("key") or "").strip()
        if not key:
            raise GoogleApiError(403, _MISSING_KEY, "PERMISSION_DENIED")
        if self.api_key is not None and key != self.api_key:
            raise GoogleApiError(
                400,
                "API key not valid. Please pass a valid API key.",
                "INVALID_ARGUMENT",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )

    def error_reply(self, error: ApiError) -> JsonReply:
        canonical = (
            error.canonical
            if isinstance(error, GoogleApiError)
            else CANONICAL_STATUS.get(error.status, "UNKNOWN")
        )
        body: dict[str, Any] = {
            "code": error.status,
            "message": error.message,
            "status": canonical,
        }
        if isinstance(error, GoogleApiError) and error.details:
            body["details"] = error.details
        headers = {**error.headers, "x-goog-upload-status": "final"}
        return JsonReply({"error": body}, error.status, headers)

    def injected_error(self, fault: InjectedHttpError) -> ApiError:
        details: list[dict[str, Any]] = []
        if fault.retry_after is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{fault.retry_after:g}s",
                }
            )
        return GoogleApiError(
            fault.status,
            fault.message
            or _INJECTED_MESSAGES.get(fault.status, f"Injected HTTP {fault.status} error."),
            fault.code or CANONICAL_STATUS.get(fault.status, "UNKNOWN"),
            details=details,
        )

    def not_found(self, method: str, path: str) -> ApiError:
        return not_found(f"Method not found: {method} {path}.")

    # ------------------------------------------------------------------- helpers

    @staticmethod
    def _version(call: Call) -> str:
        version = call.params["version"]
        if not _VERSION.match(version):
            raise not_found(f"Method not found: {call.method} {call.path}.")
        return version

    @staticmethod
    def _json_body(call: Call) -> dict[str, Any]:
        try:
            payload = json.loads(read_all(call.body, MAX_JSON_BODY_BYTES) or b"{}")
        except ValueError:
            raise invalid_argument("Invalid JSON payload received.") from None
        if not isinstance(payload, dict):
            raise invalid_argument("Invalid JSON payload received: expected an object.")
        return payload

    @staticmethod
    def _root(call: Call) -> str:
        """``http://HOST:PORT/gemini`` as the client reached it."""
        return f"http://{call.headers.get('Host', '127.0.0.1')}{PREFIX}"

    def _file(self, file: GeminiFile, call: Call) -> dict[str, Any]:
        return file.to_api(self._root(call), self._version(call))

    @staticmethod
    def _page_size(call: Call, default: int, maximum: int) -> int:
        raw = call.query.get("pageSize")
        if raw is None:
            return default
        try:
            size = int(raw)
        except ValueError:
            raise invalid_argument(f"Invalid value at 'page_size' (TYPE_INT32), {raw!r}") from None
        return default if size <= 0 else min(size, maximum)

    # ------------------------------------------------------------------- uploads

    def upload(self, call: Call) -> Reply:
        """The resumable upload: the start (``X-Goog-Upload-Command: start``), then its
        chunks (``upload``, the last ``upload, finalize``) to the URL the start gave."""
        version = self._version(call)
        upload_id = call.query.get("upload_id")
        if upload_id is not None:
            return self._upload_chunk(call, upload_id)
        command = (call.headers.get("X-Goog-Upload-Command") or "").lower()
        if (call.headers.get("X-Goog-Upload-Protocol") or "").lower() != "resumable" or (
            command != "start"
        ):
            raise invalid_argument(
                "Only resumable uploads are taken: X-Goog-Upload-Protocol: resumable, "
                "X-Goog-Upload-Command: start."
            )
        body = self._json_body(call).get("file") or {}
        if not isinstance(body, dict):
            raise invalid_argument("Invalid JSON payload received: 'file' must be an object.")
        size_text = call.headers.get("X-Goog-Upload-Header-Content-Length") or body.get(
            "size_bytes", body.get("sizeBytes")
        )
        try:
            size = int(str(size_text))
        except ValueError:
            raise invalid_argument(
                "X-Goog-Upload-Header-Content-Length is required: the size of the file."
            ) from None
        mime_type = call.headers.get("X-Goog-Upload-Header-Content-Type") or body.get(
            "mime_type", body.get("mimeType")
        )
        if not mime_type:
            raise invalid_argument("The file's MIME type is required.")
        upload_id = self.store.start_upload(
            display_name=body.get("display_name", body.get("displayName")),
            mime_type=str(mime_type),
            size=size,
        )
        url = (
            f"{self._root(call)}/upload/{version}/files?upload_id={upload_id}"
            "&upload_protocol=resumable"
        )
        return JsonReply(
            {},
            headers={
                "x-goog-upload-url": url,
                "x-goog-upload-status": "active",
                "x-goog-upload-chunk-granularity": str(8 * 1024 * 1024),
            },
        )

    def _upload_chunk(self, call: Call, upload_id: str) -> Reply:
        command = {
            part.strip() for part in (call.headers.get("X-Goog-Upload-Command") or "").split(",")
        }
        if not command & {"upload", "finalize"}:
            raise invalid_argument("X-Goog-Upload-Command must be 'upload' and/or 'finalize'.")
        try:
            offset = int(call.headers.get("X-Goog-Upload-Offset") or "0")
        except ValueError:
            raise invalid_argument("X-Goog-Upload-Offset must be an integer.") from None
        data = read_all(call.body, MAX_CHUNK_BYTES) if "upload" in command else b""
        file = self.store.upload_chunk(
            upload_id, offset=offset, data=data, finalize="finalize" in command
        )
        if file is None:
            return JsonReply({}, headers={"x-goog-upload-status": "active"})
        return JsonReply(
            {"file": self._file(file, call)}, headers={"x-goog-upload-status": "final"}
        )

    # --------------------------------------------------------------------- files

    def list_files(self, call: Call) -> Reply:
        return JsonReply(
            self.store.list_files(
                page_size=self._page_size(call, 10, 100),
                page_token=call.query.get("pageToken"),
                render=lambda file: self._file(file, call),
            )
        )

    def get_file(self, call: Call) -> Reply:
        return JsonReply(self._file(self.store.get_file(call.params["id"]), call))

    def delete_file(self, call: Call) -> Reply:
        self._version(call)
        self.store.delete_file(call.params["id"])
        return JsonReply({})

    def download(self, call: Call) -> Reply:
        self._version(call)
        if call.query.get("alt") != "media":
            raise invalid_argument("A download needs ?alt=media.")
        stream, size = self.store.open_download(call.params["id"])
        return StreamReply(stream, size)

    # ------------------------------------------------------------------- batches

    def create_batch(self, call: Call) -> Reply:
        self._version(call)
        body = self._json_body(call)
        batch = body.get("batch", body)
        if not isinstance(batch, dict):
            raise invalid_argument("Invalid JSON payload received: 'batch' must be an object.")
        display_name = batch.get("displayName", batch.get("display_name"))
        if not isinstance(display_name, str) or not display_name:
            raise invalid_argument("* BatchGenerateContentRequest.batch.display_name: required")
        source = batch.get("inputConfig", batch.get("input_config"))
        if not isinstance(source, dict):
            raise invalid_argument("* BatchGenerateContentRequest.batch.input_config: required")
        file_name = source.get("fileName", source.get("file_name"))
        if "requests" in source:
            raise invalid_argument(
                "This local server takes batches from an uploaded file only "
                "(batch.inputConfig.fileName); inline requests are not emulated."
            )
        if not isinstance(file_name, str) or not file_name.startswith("files/"):
            raise invalid_argument(
                "* BatchGenerateContentRequest.batch.input_config.file_name: expected 'files/{id}'"
            )
        record = self.store.create_batch(
            model=_id_of(call.params["model"], "models"),
            display_name=display_name,
            input_file=_id_of(file_name, "files"),
        )
        return JsonReply(record.to_api())

    def list_batches(self, call: Call) -> Reply:
        self._version(call)
        return JsonReply(
            self.store.list_batches(
                page_size=self._page_size(call, 50, 1000),
                page_token=call.query.get("pageToken"),
            )
        )

    def get_batch(self, call: Call) -> Reply:
        self._version(call)
        return JsonReply(self.store.get_batch(call.params["id"]).to_api())

    def cancel_batch(self, call: Call) -> Reply:
        self._version(call)
        self.store.cancel_batch(call.params["id"])
        return JsonReply({})

    def delete_batch(self, call: Call) -> Reply:
        self._version(call)
        self.store.delete_batch(call.params["id"])
        return JsonReply({})
