"""The fleet format: reading YAML with positions, typed kinds, located diagnostics."""

from placer.spec.diagnostics import Diagnostic, FleetError
from placer.spec.kinds import API_VERSION, KINDS, SPEC_TYPES
from placer.spec.loader import Document, load_document
from placer.spec.source import RawDocument, read_fleet_dir

__all__ = [
    "API_VERSION",
    "KINDS",
    "SPEC_TYPES",
    "Diagnostic",
    "Document",
    "FleetError",
    "RawDocument",
    "load_document",
    "read_fleet_dir",
]
