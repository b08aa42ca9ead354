"""The config writer used by ``alpr-edge provision``: whatever it writes,
TOML reads back the same (property test), and a re-provisioned config keeps
the operator's settings."""

from __future__ import annotations

import string
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.errors import ProvisionError
from edge_agent.provision import Token, dump_toml

keys = st.text(alphabet=string.ascii_letters + string.digits + "_-. é", min_size=1, max_size=12)
scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
flat = st.dictionaries(keys, st.one_of(scalars, st.lists(st.text(max_size=10), max_size=4)), max_size=5)
docs = st.dictionaries(keys, st.one_of(scalars, flat, st.lists(flat, min_size=1, max_size=3)), max_size=6)


@settings(max_examples=200, deadline=None)
@given(docs)
def test_dump_toml_round_trips(doc):
    # a list of tables that are all empty is still a list of tables; empty inline lists stay lists
    assert tomllib.loads(dump_toml(doc)) == doc


def test_nested_option_tables_round_trip():
    doc = {"recognition": {"type": "tflite", "options": {"model_dir": "/opt/m", "threads": 2}},
           "cameras": [{"id": "a", "source": "stream", "uri": 'rtsp://u:p@h/"x"'}, {"id": "b", "source": "file"}]}
    assert tomllib.loads(dump_toml(doc)) == doc


@pytest.mark.parametrize("text", ["", "alpr1.a.b", "alpr2.a.b.c", "alpr1..b.c", "alpr1.a.b.c.d"])
def test_malformed_tokens_are_refused_before_any_network_use(text):
    with pytest.raises(ProvisionError, match="not an enrollment token"):
        Token.parse(text)
