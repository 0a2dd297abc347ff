"""The contract's files in ``wsdl/``: where they are, their names, and the compiled schema."""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from hub.contract.names import ITR_NS, RESPONDER_NS
from hub.shipped import shipped_dir

#: The interaction WSDL, relative to the contract folder.
WSDL_FILE: Final = (
    "interactions/ProcessCervixScreeningInformationInteraction/"
    "ProcessCervixScreeningInformationInteraction_1.0_RIVTABP21.wsdl"
)
RESPONDER_XSD: Final = (
    "interactions/ProcessCervixScreeningInformationInteraction/"
    "ProcessCervixScreeningInformationResponder_1.0.xsd"
)
HEADER_XSD: Final = "core_components/itintegration_registry_1.0.xsd"
#: The WSDL's service and port names.
SERVICE: Final = "ProcessCervixScreeningInformationResponderService"
PORT: Final = "ProcessCervixScreeningInformationResponderPort"


def wsdl_dir() -> Path:
    """The contract folder: ``$AGENTHUB_WSDL_DIR``, else the ``wsdl/`` shipped with the hub."""
    override = os.environ.get("AGENTHUB_WSDL_DIR")
    return Path(override) if override else shipped_dir("wsdl")


class _FolderResolver(etree.Resolver):  # type: ignore[misc, unused-ignore]
    """Serve schema imports from one folder only; everything else resolves to nothing usable.

    Without this, libxml2 would follow any schemaLocation (another file, or a URL if the network
    were allowed); the contract folder is the only thing a schema may pull in.
    """

    def __init__(self, root: Path) -> None:
        super().__init__()
        self._root = root.resolve()

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:
        path = Path(system_url.removeprefix("file://")).resolve()
        if path.is_relative_to(self._root) and path.is_file():
            return self.resolve_filename(str(path), context)
        return self.resolve_string("<refused/>", context)


def load_schema(folder: Path | None = None) -> etree.XMLSchema:
    """Compile the responder schema and the header schema from ``folder`` into one XMLSchema."""
    root = (folder or wsdl_dir()).resolve()
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True
    )
    parser.resolvers.add(_FolderResolver(root))
    # A schema with no target namespace of its own whose imports pull in both namespaces.
    wrapper = (
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        f'<xs:import namespace="{RESPONDER_NS}" schemaLocation="{RESPONDER_XSD}"/>'
        f'<xs:import namespace="{ITR_NS}" schemaLocation="{HEADER_XSD}"/>'
        "</xs:schema>"
    )
    doc = etree.fromstring(wrapper.encode(), parser, base_url=str(root / "wrapper.xsd"))
    return etree.XMLSchema(doc)


# An XMLSchema's compiled schema is read-only, but the object's error_log is overwritten by every
# validation, so two threads sharing one would read each other's errors. One per thread it is.
_local = threading.local()
# Compiling is not thread-safe in libxml2 (its built-in types are set up on first use): threads
# that compiled at once right after a start failed with "the given type '' is not a built-in
# type", or crashed the process (SIGSEGV, seen in tests/test_crash.py). One compile at a time.
_compile_lock = threading.Lock()


def schema() -> etree.XMLSchema:
    """This thread's compiled schema (compiled once per thread, one thread at a time)."""
    compiled: etree.XMLSchema | None = getattr(_local, "schema", None)
    if compiled is None:
        with _compile_lock:
            compiled = load_schema()
        _local.schema = compiled
    return compiled


_XS: Final = "{http://www.w3.org/2001/XMLSchema}"


@lru_cache(maxsize=4)
def _declared_names(root: Path) -> frozenset[str]:
    names: set[str] = set()
    for path in sorted(root.rglob("*.xsd")):
        tree = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
        namespace = tree.getroot().get("targetNamespace", "")
        for element in tree.iter(f"{_XS}element"):
            name = element.get("name")
            if name:
                # Every schema of the contract is elementFormDefault="qualified": local
                # elements are in the target namespace too.
                names.add(f"{{{namespace}}}{name}" if namespace else name)
    return frozenset(names)


def declared_element_names(folder: Path | None = None) -> frozenset[str]:
    """Every element the contract's schemas declare, as ``{namespace}local`` (read once)."""
    return _declared_names((folder or wsdl_dir()).resolve())
