"""schema.json, written from the profile dataclasses: ``python -m nft_deploy.profile_schema``.

The schema is an editor aid generated from the same field specs the validator walks
(``nft_deploy.profile_fields``), with each field's docstring as its description. ``--check`` exits 1
when the checked-in ``device_profiles/schema.json`` differs from what this writes.
"""

from __future__ import annotations

import argparse
import ast
import collections
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from nft_deploy import profile_types
from nft_deploy.profile_fields import FieldSpec, choices_of, field_specs
from nft_deploy.profile_rules import JSON_ONLY, RULES
from nft_deploy.profile_types import SCHEMA_VERSION, DeviceProfile

REGENERATE = "python -m nft_deploy.profile_schema > device_profiles/schema.json"
_JSON_TYPES = {"int": "integer", "number": "number", "bool": "boolean", "string": "string", "array": "array",
               "object": "object"}


def _docs() -> dict[tuple[str, str], str]:
    """(class, field) -> the field's attribute docstring; (class, "") -> the class docstring."""
    docs = {}
    for node in ast.parse(inspect.getsource(profile_types)).body:
        if not isinstance(node, ast.ClassDef):
            continue
        docs[node.name, ""] = " ".join((ast.get_docstring(node) or "").split())
        for stmt, nxt in zip(node.body, node.body[1:], strict=False):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.name, stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def _shared_sections() -> dict[type, str]:
    """Sections used by more than one field go to $defs, named after the first field that holds them."""
    uses: dict[type, list[str]] = collections.defaultdict(list)
    todo, seen = [DeviceProfile], set()
    while todo:
        cls = todo.pop(0)
        if cls in seen:
            continue
        seen.add(cls)
        for spec in field_specs(cls):
            inner = spec.item if spec.kind == "array" else spec
            if inner.section is not None:
                uses[inner.section].append(spec.name)
                todo.append(inner.section)
    return {cls: names[0] for cls, names in uses.items() if len(names) > 1}


class _Writer:
    """Turns field specs into JSON Schema, sharing repeated sections through $defs."""

    def __init__(self):
        self.docs, self.shared, self.defs = _docs(), _shared_sections(), {}

    def section(self, cls: type, nullable: bool = False) -> dict[str, Any]:
        specs = field_specs(cls)
        out = {"type": ["object", "null"] if nullable else "object", "additionalProperties": False}
        required = [s.name for s in specs if s.required]
        if required:
            out["required"] = required
        out["properties"] = {s.name: self.field(cls, s) for s in specs}
        return out

    def field(self, cls: type, spec: FieldSpec) -> dict[str, Any]:
        doc = self.docs.get((cls.__name__, spec.name)) or next(
            (j.doc for j in JSON_ONLY.get(cls, ()) if j.name == spec.name), "")
        doc = " ".join([doc] + [f"Loader rule: {r.text}." for r in RULES
                                if (r.section, r.field) == (cls, spec.name) and r.text not in doc])
        out = {"description": doc.strip()} if doc.strip() else {}
        out.update(self.value(spec))
        if spec.has_default and spec.section is None:
            out["default"] = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        return out

    def value(self, spec: FieldSpec) -> dict[str, Any]:
        if spec.section is not None:
            name = self.shared.get(spec.section)
            if name is None:
                return self.section(spec.section, spec.nullable)
            if name not in self.defs:
                self.defs[name] = {}  # reserve the name (and the order) before recursing
                self.defs[name] = {"description": self.docs[spec.section.__name__, ""],
                                   **self.section(spec.section)}
            ref = {"$ref": f"#/$defs/{name}"}
            return {"anyOf": [ref, {"type": "null"}]} if spec.nullable else ref
        kind = _JSON_TYPES[spec.kind]
        out: dict[str, Any] = {"type": [kind, "null"] if spec.nullable else kind}
        lim = spec.limits
        if spec.kind == "array":
            out["items"] = self.value(spec.item)
            if spec.length is not None:
                out["minItems"] = out["maxItems"] = spec.length
        for key, word in (("min", "minimum"), ("max", "maximum"), ("const", "const")):
            if key in lim:
                out[word] = lim[key]
        if "choices" in lim:
            out["enum"] = list(choices_of(lim)) + ([None] if spec.nullable else [])
        if lim.get("nonblank"):
            out.update(minLength=1, pattern="\\S")
        return out


def profile_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a device profile, from the dataclasses of ``profile_types``."""
    w = _Writer()
    body = w.section(DeviceProfile)
    rules = "; ".join(r.text for r in RULES)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"nft-deploy device profile, schema_version {SCHEMA_VERSION}",
        "description": (f"Editor aid, generated from nft_deploy/profile_types.py by `{REGENERATE}`; do not edit. "
                        f"The loader (nft_deploy.profiles) is the validator of record and also checks what JSON "
                        f"Schema cannot express: {rules}. null for a section means its defaults."),
        **body,
        "$defs": w.defs,
    }


def _dump(value: Any, indent: str = "") -> str:
    """Indented JSON that keeps a value on one line when it fits, so the file reads like a hand-written one."""
    flat = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, (dict, list)) or len(indent) + len(flat) <= 100 or not value:
        return flat
    inner = indent + "  "
    if isinstance(value, list):
        rows = [inner + _dump(v, inner) for v in value]
    else:
        rows = [f"{inner}{json.dumps(k)}: {_dump(v, inner)}" for k, v in value.items()]
    return "{["[isinstance(value, list)] + "\n" + ",\n".join(rows) + "\n" + indent + "}]"[isinstance(value, list)]


def schema_text() -> str:
    """The schema as the checked-in file holds it."""
    return _dump(profile_schema()) + "\n"


def shipped_schema_path() -> Path:
    """``device_profiles/schema.json`` next to the built-in profiles."""
    from nft_deploy.profiles import builtin_profile_dir

    return Path(str(builtin_profile_dir() / "schema.json"))


def main(argv: list[str] | None = None) -> int:
    """Print the schema, or with ``--check`` compare it with the checked-in file (exit 1 on drift)."""
    parser = argparse.ArgumentParser(prog="python -m nft_deploy.profile_schema", description=__doc__.split("\n")[0])
    parser.add_argument("--check", nargs="?", const="", metavar="PATH",
                        help="compare with PATH (default: the shipped schema.json) instead of printing")
    args = parser.parse_args(argv)
    if args.check is None:
        sys.stdout.write(schema_text())
        return 0
    path = Path(args.check) if args.check else shipped_schema_path()
    current = path.read_text(encoding="utf-8") if path.is_file() else ""
    if current != schema_text():
        print(f"{path}: out of date with nft_deploy/profile_types.py; regenerate with `{REGENERATE}`",
              file=sys.stderr)
        return 1
    print(f"{path}: up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
