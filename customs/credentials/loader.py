"""The offline document loader: JSON-LD contexts served from the package, nothing else.

A verifier that fetched ``@context`` URLs at verification time would need the network at a
border post and would let whoever answers those URLs change what a credential means. So only
the contexts shipped in ``contexts/`` (listed in ``contexts/index.json``, which the Node test
verifier reads too) are known; any other URL is an UnknownContext (exit 10). Inline context
objects need no loading and are accepted as they are.

Shipped: ``credentials-v2.jsonld`` is https://www.w3.org/ns/credentials/v2 copied unchanged
from the npm package @digitalbazaar/credentials-context 3.2.0 (contexts/v2.jsonld, SHA-256
8a9f494a89ecc51db093e90e84713e07e84d6d9204364a9b3c7868b21751236f); ``sealtrail-v1.jsonld`` is
ours (see README.md, "Vocabulary").
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any

from customs.credentials.errors import UnknownContext

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

CREDENTIALS_V2 = "https://www.w3.org/ns/credentials/v2"
SEALTRAIL_V1 = "https://w3id.org/sealtrail/credentials/v1"


def _contexts_dir() -> Traversable:
    return resources.files("customs.credentials").joinpath("contexts")


@functools.cache
def shipped() -> dict[str, str]:
    """Context URL -> file name inside the package."""
    text = _contexts_dir().joinpath("index.json").read_text("utf-8")
    index: dict[str, str] = json.loads(text)
    return index


@functools.cache
def _load(url: str) -> str:
    return _contexts_dir().joinpath(shipped()[url]).read_text("utf-8")


def load_context(url: str) -> dict[str, Any]:
    """A shipped context as a fresh JSON object; UnknownContext for any other URL."""
    if url not in shipped():
        raise UnknownContext(f"@context {url[:100]} is not shipped with SealTrail; "
                             "contexts are never fetched at verification time")
    doc: dict[str, Any] = json.loads(_load(url))
    return doc


def document_loader(url: str) -> dict[str, Any]:
    """The JSON-LD document loader interface (as pyld and jsonld.js call it)."""
    return {"contextUrl": None, "documentUrl": url, "document": load_context(url)}


def context_urls(document: Any) -> Iterator[str]:
    """Every context URL a document names, at any depth (the proof's own @context, and any
    embedded or scoped context an issuer added)."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "@context":
                for entry in value if isinstance(value, list) else [value]:
                    if isinstance(entry, str):
                        yield entry
                    elif isinstance(entry, dict):  # inline: may import or scope others
                        if isinstance(entry.get("@import"), str):
                            yield entry["@import"]
                        yield from context_urls(entry)
                    elif entry is not None:
                        raise UnknownContext(f"@context entry {entry!r} is neither a URL nor "
                                             "an object")
            else:
                yield from context_urls(value)
    elif isinstance(document, list):
        for item in document:
            yield from context_urls(item)


def check_contexts(document: Any) -> None:
    """Refuse a document that names a context we do not ship."""
    for url in context_urls(document):
        load_context(url)
