"""The JSON Schema of the fleet format, generated from the typed kinds (for yaml-language-server)."""

from __future__ import annotations

from typing import Any

from placer.spec.kinds import API_VERSION, SPEC_TYPES, Metadata


def fleet_schema() -> dict[str, Any]:
    variants = []
    defs: dict[str, Any] = {}
    meta = Metadata.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs.update(meta.pop("$defs", {}))
    defs["Metadata"] = meta
    for kind, model in SPEC_TYPES.items():
        schema = model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[f"{kind}Spec"] = schema
        variants.append({
            "type": "object",
            "additionalProperties": False,
            "required": ["apiVersion", "kind", "metadata"] + ([] if kind == "Settings" else ["spec"]),
            "properties": {
                "apiVersion": {"const": API_VERSION},
                "kind": {"const": kind},
                "metadata": {"$ref": "#/$defs/Metadata"},
                "spec": {"$ref": f"#/$defs/{kind}Spec"},
            },
        })
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://placer.dev/schemas/fleet-v1alpha1.json",
        "title": "placer fleet document",
        "oneOf": variants,
        "$defs": defs,
    }
