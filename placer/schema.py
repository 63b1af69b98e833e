"""The JSON Schema of the fleet format, generated from the typed kinds (for yaml-language-server)."""

from __future__ import annotations

from typing import Any

from placer.spec.kinds import API_VERSION, SELECTOR_LISTS, SPEC_TYPES, Metadata, Selector

# what the loader takes beyond the typed kinds' own schema, so that an editor does not flag a
# document `validate` accepts: a selector field's single value for its list (`names: chat`), and
# a version written as a number (`version: 1.10`, kept as the text 1.10)
SCALAR_OR_LIST = ("Selector", [Selector.model_fields[f].alias or f for f in SELECTOR_LISTS])
NUMBER_AS_TEXT = ("ModelSpec", ["version"])


def _loosen(defs: dict[str, Any]) -> None:
    kind, fields = SCALAR_OR_LIST
    for name in fields:
        prop = defs[kind]["properties"][name]
        arrays = [a for a in prop.get("anyOf", [prop]) if a.get("type") == "array"]
        prop["anyOf"] = [*prop.get("anyOf", [prop]), *(a["items"] for a in arrays)]
        for key in ("type", "items"):
            prop.pop(key, None)
    kind, fields = NUMBER_AS_TEXT
    for name in fields:
        defs[kind]["properties"][name]["anyOf"].append({"type": "number"})


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
    _loosen(defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://placer.dev/schemas/fleet-v1alpha1.json",
        "title": "placer fleet document",
        "oneOf": variants,
        "$defs": defs,
    }
