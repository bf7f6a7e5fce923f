"""The OpenAI Batch API through the openai SDK: upload a JSONL file, create, check, cancel, download.

Requests themselves (their parameters, and reading their replies) belong to `cards.generate.openai`;
this module only moves files and batches. Its client has no reply cap: an output file holds
many replies. Server messages are scrubbed of the key and the secret parts of the base URL.
"""

from __future__ import annotations

from dataclasses import dataclass

import openai

from cards.errors import GenerationError
from cards.redact import mask_url, scrub

ENDPOINT = "/v1/chat/completions"
WINDOW = "24h"
# The Batch API's limits per input file.
MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1024 * 1024
# A batch's output file: its replies, each within the live reply cap, and their envelopes.
MAX_OUTPUT_BYTES = 1024 * 1024 * 1024
# Batches that can still change; every other state is final.
OPEN_STATES = ("validating", "in_progress", "finalizing", "cancelling")


@dataclass(frozen=True)
class BatchState:
    id: str
    status: str
    total: int
    completed: int
    failed: int
    output_file: str | None
    error_file: str | None


class BatchClient:
    """Files and batches on one server."""

    def __init__(self, *, base_url: str | None, api_key: str | None, timeout: float = 120.0):
        from cards.generate.openai import _url_secrets

        self._secrets = tuple(s for s in (api_key, *_url_secrets(base_url)) if s and len(s) >= 4)
        self._client = openai.OpenAI(api_key=api_key or "not-needed", base_url=base_url, timeout=timeout,
                                     max_retries=3)
        self.base_url = mask_url(str(self._client.base_url))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> BatchClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def upload(self, jsonl: bytes, name: str) -> str:
        """Upload one input file; returns its id."""
        return self._call("/files", lambda: self._client.files.create(file=(name, jsonl), purpose="batch")).id

    def create(self, input_file: str, metadata: dict[str, str]) -> str:
        """Create the batch of an uploaded input file; returns its id."""
        return self._call("/batches", lambda: self._client.batches.create(
            input_file_id=input_file, endpoint=ENDPOINT, completion_window=WINDOW, metadata=metadata)).id

    def find(self, input_file: str, look_at: int = 500) -> str | None:
        """The id of a batch made from this input file, among the newest `look_at` batches, if any."""
        def search() -> str | None:
            for n, batch in enumerate(self._client.batches.list(limit=100)):
                if batch.input_file_id == input_file:
                    return batch.id
                if n + 1 >= look_at:
                    break
            return None

        return self._call("/batches", search)

    def state(self, batch_id: str) -> BatchState:
        return _state(self._call(f"/batches/{batch_id}", lambda: self._client.batches.retrieve(batch_id)))

    def cancel(self, batch_id: str) -> BatchState:
        return _state(self._call(f"/batches/{batch_id}/cancel", lambda: self._client.batches.cancel(batch_id)))

    def content(self, file_id: str, limit: int = MAX_OUTPUT_BYTES) -> bytes:
        """A file's bytes, read as they come and refused past `limit`: a reply file is untrusted too."""
        path = f"/files/{file_id}/content"

        def read() -> bytes:
            chunks, size = [], 0
            with self._client.files.with_streaming_response.content(file_id) as response:
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise GenerationError(f"{self.base_url.rstrip('/')}{path}: file over "
                                              f"{limit // (1024 * 1024):,} MB; not read")
                    chunks.append(chunk)
            return b"".join(chunks)

        return self._call(path, read)

    def _call(self, path: str, fn):
        where = f"{self.base_url.rstrip('/')}{path}"
        try:
            return fn()
        except openai.APIStatusError as exc:
            status = exc.status_code
            detail = scrub(" ".join(str(exc.message or "").split())[:200], self._secrets)
            if status in (404, 405, 501) and path in ("/files", "/batches"):
                raise GenerationError(f"the server at {self.base_url} has no Batch API ({where}: HTTP {status}); "
                                      "run without --batch to send the requests live") from None
            if status == 401:
                raise GenerationError(f"{where} rejected the API key (HTTP 401); check OPENAI_API_KEY") from None
            raise GenerationError(f"{where} failed (HTTP {status}): {detail}") from None
        except openai.APIConnectionError:
            raise GenerationError(f"cannot reach {where}; check that the server is running and --base-url") from None


def _state(batch) -> BatchState:
    counts = batch.request_counts
    return BatchState(batch.id, batch.status, counts.total if counts else 0, counts.completed if counts else 0,
                      counts.failed if counts else 0, batch.output_file_id, batch.error_file_id)


__all__ = ["BatchClient", "BatchState", "MAX_BYTES", "MAX_REQUESTS", "OPEN_STATES"]
