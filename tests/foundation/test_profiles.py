"""Device profiles: every shipped file loads, round-trips, agrees with schema.json; every bad field is named."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from nft_deploy.errors import NftDeployError, ProfileError
from nft_deploy.profiles import (
    DeviceProfile,
    ProgrammingVariation,
    builtin_profile_dir,
    list_profiles,
    load_profile,
    profile_from_dict,
)

DEVICE_PROFILES = Path(__file__).resolve().parents[2] / "device_profiles"
SHIPPED = sorted(p for p in DEVICE_PROFILES.glob("*.json") if p.name != "schema.json")


def test_the_folder_ships_the_profiles_the_issue_requires():
    names = {p.stem for p in SHIPPED}
    assert {"ideal", "nft_reference", "rram_4bit", "rram_state_dependent", "fefet_state_dependent",
            "pcm_8bit"} <= names
    assert list_profiles() == sorted(names)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profile_loads_by_name_and_path_and_round_trips_through_json(path):
    by_name = load_profile(path.stem)
    assert by_name == load_profile(path) == load_profile(str(path))
    assert by_name.name == path.stem, "the name inside a file must be its file name"
    assert by_name.source.strip(), "every profile says where its numbers come from"
    again = profile_from_dict(json.loads(by_name.to_json()))
    assert again == by_name
    assert json.loads(again.to_json()) == json.loads(by_name.to_json())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profile_and_its_to_dict_validate_against_schema_json(path, schema):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(json.loads(path.read_text()))
    validator.validate(load_profile(path).to_dict())


def test_every_field_in_schema_json_is_a_dataclass_field_and_back(schema):
    """Names in schema.json and in the dataclasses must not drift (distribution and $schema are JSON-only)."""
    from nft_deploy import profiles as P

    def fields(cls):
        return {f.name for f in dataclasses.fields(cls)}

    props = schema["properties"]
    defs = schema["$defs"]
    assert set(props) == fields(P.DeviceProfile) | {"$schema"}
    assert set(defs["weights"]["properties"]) == fields(P.WeightSpec)
    assert set(defs["programming"]["properties"]) == fields(P.ProgrammingVariation) | {"distribution"}
    sd = defs["programming"]["properties"]["state_dependent"]["properties"]
    assert set(sd) == fields(P.StateDependence)
    assert set(defs["read_noise"]["properties"]) == fields(P.ReadNoise)
    assert set(defs["stuck_at"]["properties"]) == fields(P.StuckAt)
    assert set(props["io"]["properties"]) == fields(P.IOSpec)
    assert set(props["mapping"]["properties"]) == fields(P.Mapping)
    assert set(props["mapping"]["properties"]["overrides"]["items"]["properties"]) == fields(P.LayerOverride)


def test_full_featured_profile_round_trips_and_validates(reference_dict, schema):
    p = profile_from_dict(reference_dict)
    assert p.weights.cells == 2 and p.programming.state_dependent.renormalize_fraction is None
    assert p.mapping.overrides[1].weights.bits == 4
    assert profile_from_dict(json.loads(p.to_json())) == p
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(reference_dict, schema)
    jsonschema.validate(p.to_dict(), schema)


def _set(d, path, value):
    *head, last = path
    for k in head:
        d = d[k]
    d[last] = value


def _del(d, path):
    *head, last = path
    for k in head:
        d = d[k]
    del d[last]


BAD_FIELDS = [
    # (class, JSON path to change, new value or DELETE, path named in the error, phrase in the error)
    ("wrong type", ("weights", "bits"), "8", "weights.bits", "must be an int"),
    ("wrong type", ("weights", "bits"), 8.5, "weights.bits", "must be an int"),
    ("wrong type", ("weights", "quantize"), 1, "weights.quantize", "must be a bool"),
    ("wrong type", ("programming", "sigma"), True, "programming.sigma", "must be a number"),
    ("wrong type", ("programming",), [0.1], "programming", "must be an object"),
    ("wrong type", ("mapping", "digital_layers", 0), 3, "mapping.digital_layers[0]", "must be a string"),
    ("wrong type", ("name",), None, "name", "must be a string"),
    ("out of range", ("programming", "sigma"), -0.1, "programming.sigma", ">= 0"),
    ("out of range", ("programming", "sigma"), 1e400, "programming.sigma", "finite"),
    ("out of range", ("weights", "bits"), 17, "weights.bits", "<= 16"),
    ("out of range", ("weights", "bits_per_cell"), 7, "weights.bits_per_cell", "<= 6"),
    ("out of range", ("stuck_at", "zero_rate"), 1.5, "stuck_at.zero_rate", "<= 1"),
    ("out of range", ("stuck_at", "full_rate"), 0.995, "stuck_at.full_rate", "zero_rate + full_rate"),
    ("out of range", ("io", "input_bits"), 1, "io.input_bits", ">= 2"),
    ("out of range", ("programming", "state_dependent", "band"), [0.8, 0.2], "programming.state_dependent.band",
     "low < high"),
    ("out of range", ("programming", "state_dependent", "band"), [0.2], "programming.state_dependent.band",
     "two numbers"),
    ("out of range", ("mapping", "overrides", 0, "programming", "sigma"), 11, "mapping.overrides[0].programming.sigma",
     "<= 10"),
    ("out of range", ("schema_version",), 2, "schema_version", "must be 1"),
    ("out of range", ("name",), " ", "name", "non-empty"),
    ("unknown key", ("programming", "sigmaa"), 0.1, "programming.sigmaa", "unknown field"),
    ("unknown key", ("extra",), 1, "extra", "unknown field"),
    ("unknown key", ("mapping", "overrides", 1, "layer"), "x", "mapping.overrides[1].layer", "unknown field"),
    ("unknown key", ("programming", "state_dependent", "s"), 2, "programming.state_dependent.s", "unknown field"),
    ("missing required", ("programming", "sigma"), "DELETE", "programming.sigma", "required"),
    ("missing required", ("read_noise", "sigma"), "DELETE", "read_noise.sigma", "required"),
    ("missing required", ("schema_version",), "DELETE", "schema_version", "required"),
    ("missing required", ("name",), "DELETE", "name", "required"),
    ("missing required", ("mapping", "overrides", 0, "layers"), "DELETE", "mapping.overrides[0].layers", "required"),
    ("missing required", ("programming", "state_dependent", "factor"), "DELETE",
     "programming.state_dependent.factor", "required"),
    ("bad enum", ("programming", "unit"), "volts", "programming.unit", "'cell_range', 'level'"),
    ("bad enum", ("read_noise", "unit"), "Level", "read_noise.unit", "'cell_range', 'level'"),
    ("bad enum", ("weights", "scale"), "per_row", "weights.scale", "'per_layer', 'per_channel'"),
    ("bad enum", ("weights", "quant_style"), "int8", "weights.quant_style", "'round_clip', 'qdq'"),
    ("bad enum", ("programming", "distribution"), "lognormal", "programming.distribution", "'gaussian'"),
    ("bad enum", ("mapping", "op_types", 1), "Relu", "mapping.op_types[1]", "'Conv', 'Gemm'"),
]


@pytest.mark.parametrize("cls,where,value,named,phrase", BAD_FIELDS,
                         ids=[f"{c}:{n}" for c, _, _, n, _ in BAD_FIELDS])
def test_bad_field_gives_profile_error_naming_file_and_json_path(tmp_path, reference_dict, schema, cls, where, value,
                                                                 named, phrase):
    bad = copy.deepcopy(reference_dict)
    _del(bad, where) if value == "DELETE" else _set(bad, where, value)
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(bad))
    with pytest.raises(ProfileError) as e:
        load_profile(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: {named}: "), msg
    assert phrase in msg, msg
    assert "\n" not in msg
    jsonschema = pytest.importorskip("jsonschema")
    if cls != "out of range" or where[-1] not in ("bits_per_cell", "full_rate", "band"):
        # schema.json cannot express cross-field rules; everything else it must reject too
        assert not jsonschema.Draft202012Validator(schema).is_valid(bad), f"schema.json accepts {cls} at {named}"


def test_unknown_field_error_lists_the_allowed_fields():
    with pytest.raises(ProfileError, match=r"allowed here: .*renormalize_fraction"):
        profile_from_dict({"schema_version": 1, "name": "x",
                           "programming": {"sigma": 0.1, "state_dependent": {"factor": 2, "bnd": [0, 1]}}})


@pytest.mark.parametrize("text,phrase", [
    ("{", "not valid JSON"),
    ("[1, 2]", "(top level): must be an object"),
    ("1" * 5000, "not valid JSON"),
    ("[" * 50000, "not valid JSON"),
])
def test_file_that_is_not_a_profile_object_gives_profile_error_naming_the_file(tmp_path, text, phrase):
    f = tmp_path / "junk.json"
    f.write_text(text)
    with pytest.raises(ProfileError, match=rf"^{f}: .*") as e:
        load_profile(f)
    assert phrase in str(e.value)


def test_unknown_name_and_missing_path_are_profile_errors_listing_what_exists(tmp_path):
    with pytest.raises(ProfileError, match="built-in profiles: .*nft_reference"):
        load_profile("nft_referense")
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profile(tmp_path / "nope.json")
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profile(tmp_path)  # a directory is not a profile
    assert issubclass(ProfileError, NftDeployError)


def test_defaults_fill_optional_sections_and_null_sections_mean_defaults():
    minimal = profile_from_dict({"schema_version": 1, "name": "m"})
    with_nulls = profile_from_dict({"schema_version": 1, "name": "m", "weights": None, "programming": None,
                                    "read_noise": None, "stuck_at": None, "io": None, "mapping": None})
    assert minimal == with_nulls == DeviceProfile(name="m")
    assert minimal.weights.cells == 4 and minimal.weights.levels == 255
    assert not minimal.is_noisy
    assert minimal.programming.state_dependent is None


def test_missing_renormalize_fraction_defaults_to_0_4_and_null_disables_it():
    base = {"schema_version": 1, "name": "s", "programming": {"sigma": 0.3, "state_dependent": {"factor": 4}}}
    assert profile_from_dict(base).programming.state_dependent.renormalize_fraction == 0.4
    base["programming"]["state_dependent"]["renormalize_fraction"] = None
    assert profile_from_dict(base).programming.state_dependent.renormalize_fraction is None


@pytest.mark.parametrize("where", [("programming",), ("mapping", "overrides", 0, "programming")],
                         ids=["top level", "override"])
def test_zero_factor_with_full_renormalization_is_a_profile_error_not_a_division_by_zero(tmp_path, reference_dict,
                                                                                         where):
    """f * factor^2 + 1 - f = 0 would divide sigma by zero in NoiseModel.sigma_cell."""
    _set(reference_dict, (*where, "state_dependent"), {"factor": 0, "renormalize_fraction": 1})
    f = tmp_path / "zero.json"
    f.write_text(json.dumps(reference_dict))
    with pytest.raises(ProfileError) as e:
        load_profile(f)
    path = ".".join(str(k) for k in where).replace(".0.", "[0].")
    assert str(e.value).startswith(f"{f}: {path}.state_dependent.renormalize_fraction: "), str(e.value)
    assert "f * factor^2 + 1 - f > 0" in str(e.value)


def test_zero_factor_is_fine_while_some_variance_is_left():
    from nft_deploy.noise import NoiseModel

    for sd in ({"factor": 0, "renormalize_fraction": 0.5}, {"factor": 0, "renormalize_fraction": None},
               {"factor": 0.5, "renormalize_fraction": 1}):
        p = profile_from_dict({"schema_version": 1, "name": "z", "programming": {"sigma": 0.1, "state_dependent": sd}})
        assert NoiseModel(p).sigma_cell > 0, sd


def test_json_only_keys_are_accepted_and_dropped():
    p = profile_from_dict({"$schema": "./schema.json", "schema_version": 1, "name": "j",
                           "programming": {"sigma": 0.1, "distribution": "gaussian"}})
    assert p == profile_from_dict({"schema_version": 1, "name": "j", "programming": {"sigma": 0.1}})
    assert "$schema" not in p.to_dict() and "distribution" not in p.to_dict()["programming"]
    with pytest.raises(ProfileError, match=r"^<profile>: \$schema: must be a string, got integer$"):
        profile_from_dict({"$schema": 1, "schema_version": 1, "name": "j"})


def test_integral_json_number_is_accepted_as_an_int_like_json_schema_does():
    p = profile_from_dict({"schema_version": 1.0, "name": "i", "weights": {"bits": 8.0, "bits_per_cell": 2.0}})
    assert p.weights.bits == 8 and type(p.weights.bits) is int and type(p.weights.cells) is int


@pytest.mark.parametrize("bits,k,cells", [(8, 2, 4), (8, 3, 3), (5, 2, 3), (4, 4, 1), (1, 1, 1), (16, 5, 4)])
def test_cells_per_weight_is_ceil_m_over_k(bits, k, cells):
    p = profile_from_dict({"schema_version": 1, "name": "c", "weights": {"bits": bits, "bits_per_cell": k}})
    assert p.weights.cells == cells and p.weights.levels == 2**bits - 1


def test_for_layer_takes_the_first_matching_override_and_digital_glob_matches_globs(reference_dict):
    p = profile_from_dict(reference_dict)
    c1 = p.for_layer("conv1")
    assert c1.programming == ProgrammingVariation(sigma=0.5)  # a replacement section, not a merge
    assert c1.weights == p.weights, "conv1 matches the first override only"
    c2 = p.for_layer("conv2")
    assert c2.weights.bits == 4 and c2.stuck_at.zero_rate == 0.5 and c2.programming == p.programming
    assert p.for_layer("fc.0") is p
    assert p.digital_glob("fc.0") == "fc.*" and p.digital_glob("head") == "head"
    assert p.digital_glob("conv1") is None and p.digital_glob("fc") is None


def test_with_sigma_sets_the_top_level_and_overrides_keep_their_ratio(reference_dict):
    p = profile_from_dict(reference_dict).with_sigma(0.05)  # top 0.2, conv1 override 0.5: ratio 2.5
    assert p.programming.sigma == 0.05 and p.for_layer("conv1").programming.sigma == pytest.approx(0.125)
    assert p.for_layer("conv2").programming.sigma == 0.05  # no programming section: follows the top level
    assert p.programming.unit == "level" and p.programming.state_dependent.factor == 2.0
    assert load_profile("ideal").with_sigma(0.3).is_noisy
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ProfileError, match="--sigma"):
            p.with_sigma(bad)


def test_with_sigma_refuses_a_ratio_to_a_zero_top_level_sigma(reference_dict):
    reference_dict["programming"]["sigma"] = 0.0
    with pytest.raises(ProfileError, match=r"overrides\[0\]\.programming\.sigma.*ratio"):
        profile_from_dict(reference_dict).with_sigma(0.1)


def test_is_noisy_sees_noise_that_only_an_override_configures():
    quiet = {"schema_version": 1, "name": "q", "programming": {"sigma": 0.0}}
    assert not profile_from_dict(quiet).is_noisy
    for section in ({"programming": {"sigma": 0.1}}, {"read_noise": {"sigma": 0.1}},
                    {"stuck_at": {"full_rate": 0.1}}):
        d = {**quiet, "mapping": {"overrides": [{"layers": "[ab]*", **section}]}}
        assert profile_from_dict(d).is_noisy, section


def test_profiles_are_frozen():
    p = load_profile("nft_reference")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.programming.sigma = 1.0  # type: ignore[misc]


def test_builtin_profile_dir_holds_the_schema():
    assert (builtin_profile_dir() / "schema.json").is_file()
