"""Property tests: whatever JSON the loader is fed, only ProfileError escapes; what it accepts, schema.json
accepts too, and it round-trips."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from nft_deploy.errors import ProfileError
from nft_deploy.profiles import _parse, load_profile, profile_from_dict

FAST = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=True) | st.text(max_size=8)
json_values = st.recursive(
    scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20,
)
KEYS = ["schema_version", "name", "weights", "programming", "read_noise", "stuck_at", "io", "mapping", "bits",
        "bits_per_cell", "quantize", "scale", "sigma", "unit", "state_dependent", "factor", "band",
        "renormalize_fraction", "zero_rate", "full_rate", "input_bits", "output_bits", "op_types",
        "digital_layers", "overrides", "layers", "distribution", "quant_style"]
near_values = st.sampled_from([0, 1, 2, 8, 16, 17, -1, 0.5, 1.5, 1e9, "cell_range", "level", "per_channel",
                               "Conv", "gaussian", [], [0.25, 0.75], {}, None, True, "x"])


def _accepts(obj) -> bool:
    try:
        profile_from_dict(obj, "fuzz.json")
    except ProfileError:
        return False
    return True


def _paths(obj, prefix=()):
    """Every (container, key) position inside a parsed JSON value."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated_profiles(draw, base_name):
    obj = json.loads(load_profile(base_name).to_json()) if base_name else {}
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(obj)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "near", "delete", "add"]))
        # drawn values are copied: a later step mutates in place, and hypothesis may hand the same object
        # to another example (it then sees a different strategy and reports FlakyStrategyDefinition)
        if action == "replace":
            parent[path[-1]] = copy.deepcopy(draw(json_values))
        elif action == "near":
            parent[path[-1]] = copy.deepcopy(draw(near_values))
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS) | st.text(max_size=6))] = copy.deepcopy(draw(near_values | json_values))
    return obj


def _check_accepted_profile_is_consistent(obj, validator):
    p = profile_from_dict(obj, "fuzz.json")
    assert profile_from_dict(json.loads(p.to_json())) == p
    if validator is not None:
        assert validator.is_valid(obj), "the loader accepted a profile that schema.json rejects"
        assert validator.is_valid(p.to_dict())


@pytest.fixture(scope="module")
def validator():
    try:
        import jsonschema
    except ImportError:
        return None
    from pathlib import Path

    schema = json.loads((Path(__file__).resolve().parents[2] / "device_profiles" / "schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


@FAST
@given(json_values)
def test_random_json_value_gives_a_profile_or_profile_error(obj):
    try:
        profile_from_dict(obj, "fuzz.json")
    except ProfileError as e:
        assert str(e).startswith("fuzz.json: ")


@FAST
@given(st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode()))
def test_random_bytes_as_a_profile_file_give_a_profile_or_profile_error(data):
    try:
        _parse(data, "fuzz.json")
    except ProfileError as e:
        assert str(e).startswith("fuzz.json: ") and "\n" not in str(e)


@FAST
@given(st.sampled_from(["nft_reference", "rram_4bit", "pcm_8bit", "fefet_state_dependent"]).flatmap(mutated_profiles))
def test_mutated_builtin_profile_loads_consistently_or_raises_profile_error(validator, obj):
    if _accepts(obj):
        _check_accepted_profile_is_consistent(obj, validator)


@FAST
@given(st.dictionaries(st.sampled_from(KEYS), near_values | json_values, max_size=6))
def test_random_object_with_profile_keys_loads_consistently_or_raises_profile_error(validator, obj):
    obj = {"schema_version": 1, "name": "n", **obj}
    if _accepts(obj):
        _check_accepted_profile_is_consistent(obj, validator)


def test_the_mutation_strategy_reaches_both_outcomes():
    """Guards the property tests against a generator that only ever produces invalid (or valid) input."""
    strategy = mutated_profiles("rram_4bit")
    fast = settings(max_examples=300, database=None, deadline=None, derandomize=True)
    valid = find(strategy, lambda o: _accepts(o) and o != json.loads(load_profile("rram_4bit").to_json()),
                 settings=fast)
    invalid = find(strategy, lambda o: not _accepts(o), settings=fast)
    assert _accepts(valid) and not _accepts(invalid)
