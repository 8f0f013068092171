"""schema.json is generated from the profile dataclasses, and the loader enforces every limit it states."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from nft_deploy import profile_schema
from nft_deploy.errors import ProfileError
from nft_deploy.profile_fields import field_specs
from nft_deploy.profiles import DeviceProfile, WeightSpec, profile_from_dict


def test_checked_in_schema_json_is_the_generated_one(repo):
    shipped = (repo / "device_profiles" / "schema.json").read_text(encoding="utf-8")
    assert shipped == profile_schema.schema_text(), (
        f"device_profiles/schema.json is out of date with nft_deploy/profile_types.py; regenerate it with "
        f"`{profile_schema.REGENERATE}`")


def test_check_mode_exits_1_naming_the_regenerate_command_when_the_file_drifted(tmp_path, capsys):
    f = tmp_path / "schema.json"
    f.write_text(profile_schema.schema_text().replace('"maximum": 16', '"maximum": 15', 1))
    assert profile_schema.main(["--check", str(f)]) == 1
    assert profile_schema.REGENERATE in capsys.readouterr().err
    f.write_text(profile_schema.schema_text())
    assert profile_schema.main(["--check", str(f)]) == 0
    assert profile_schema.main(["--check"]) == 0, "the shipped schema.json is out of date"


def test_schema_descriptions_are_the_field_docstrings_and_rules(schema):
    bits = schema["$defs"]["weights"]["properties"]["bits"]
    assert bits["description"].startswith("M: bits per weight magnitude")
    assert schema["$defs"]["weights"]["description"].startswith("How a weight is stored")
    per_cell = schema["$defs"]["weights"]["properties"]["bits_per_cell"]
    assert "Loader rule: bits_per_cell <= bits" in per_cell["description"]
    renorm = schema["$defs"]["programming"]["properties"]["state_dependent"]["properties"]["renormalize_fraction"]
    assert "Loader rule: f * factor^2 + 1 - f > 0" in renorm["description"]
    assert "gaussian" in schema["$defs"]["programming"]["properties"]["distribution"]["description"]


def _props(schema, node):
    """The properties of a schema node, through $ref and anyOf-with-null."""
    for alt in node.get("anyOf", [node]):
        if "$ref" in alt:
            return schema["$defs"][alt["$ref"].rsplit("/", 1)[1]]["properties"]
        if "properties" in alt:
            return alt["properties"]
    return None


def _limited_fields(schema, node, path):
    """(path, key, minimum or None, maximum or None) of every scalar field with a range."""
    for key, sub in _props(schema, node).items():
        if _props(schema, sub) is not None:
            yield from _limited_fields(schema, sub, (*path, key))
        elif "minimum" in sub or "maximum" in sub:
            yield (*path, key), sub.get("minimum"), sub.get("maximum")


def test_the_loader_enforces_every_range_schema_json_states(schema, reference_dict):
    """Each minimum/maximum in schema.json, crossed by one step, is refused by the loader at that JSON path."""
    limited = list(_limited_fields(schema, schema, ()))
    assert len(limited) >= 10, limited
    for where, lo, hi in limited:
        step = 1 if "integer" in str(_leaf(schema, where)["type"]) else 1e-9
        for bad, phrase in ((lo - step if lo is not None else None, ">="), (hi + step if hi is not None else None, "<=")):
            if bad is None:
                continue
            d = copy.deepcopy(reference_dict)
            parent = d
            for k in where[:-1]:
                parent = parent[k]  # reference_dict holds every section
            parent[where[-1]] = bad
            with pytest.raises(ProfileError, match=rf"^x\.json: {'.'.join(where)}: must be {phrase}"):
                profile_from_dict(d, "x.json")


def _leaf(schema, where):
    node = schema
    for k in where:
        node = _props(schema, node)[k]
    return node


def test_schema_defaults_are_the_dataclass_defaults(schema):
    weights = schema["$defs"]["weights"]["properties"]
    assert {k: v["default"] for k, v in weights.items()} == dataclasses.asdict(WeightSpec())
    mapping = schema["properties"]["mapping"]["properties"]
    assert mapping["op_types"]["default"] == list(DeviceProfile(name="x").mapping.op_types)
    assert "default" not in schema["$defs"]["programming"]["properties"]["sigma"], "a required key has no default"


def test_every_dataclass_field_has_a_spec_and_required_keys_match_the_schema(schema):
    specs = {s.name: s for s in field_specs(DeviceProfile)}
    assert set(schema["required"]) == {n for n, s in specs.items() if s.required} == {"name", "schema_version"}
    assert [s.name for s in field_specs(WeightSpec)] == [f.name for f in dataclasses.fields(WeightSpec)]


def test_printing_the_schema_writes_valid_json(capsys):
    assert profile_schema.main([]) == 0
    assert json.loads(capsys.readouterr().out) == profile_schema.profile_schema()
