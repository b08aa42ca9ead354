"""The wire contract: round trips, tamper evidence, strict parsing."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.wire import (
    Ack, Alternate, EnvelopeError, EnvelopeHeader, Location, MalformedMessage, Opener, PlateRead, Sealer, Topics,
    decode_ack, decode_batch, decode_read, encode_ack, encode_batch, encode_read, fold_confusables,
    generate_keypair, load_private_key, load_public_key, new_read_id, normalise_plate,
)

PRIVATE, PUBLIC = generate_keypair()

plates = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=10)
conf = st.floats(min_value=0, max_value=1, allow_nan=False)
times = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31, 23, 59, 59),
                     timezones=st.just(dt.timezone.utc))
reads = st.builds(
    PlateRead,
    read_id=st.builds(lambda: new_read_id()),
    device_id=st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,20}\Z"),
    camera_id=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z"),
    captured_at=times,
    plate=plates,
    confidence=conf,
    box=st.tuples(*[st.integers(0, 5000)] * 4),
    alternates=st.lists(st.builds(Alternate, plates, conf), max_size=5).map(tuple),
    crop_jpeg=st.one_of(st.none(), st.binary(min_size=1, max_size=300)),
    context_jpeg=st.one_of(st.none(), st.binary(min_size=1, max_size=300)),
    location=st.one_of(st.none(), st.builds(Location, st.floats(-90, 90), st.floats(-180, 180),
                                            st.one_of(st.none(), st.floats(0, 359.9)))),
    model_version=st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")) | st.just(" "),
                          max_size=64),
)


@given(reads)
@settings(max_examples=200, deadline=None)
def test_read_round_trips(read):
    assert decode_read(encode_read(read)) == read


@given(reads)
@settings(max_examples=100, deadline=None)
def test_seal_open_round_trips(read):
    sealer = Sealer(load_public_key(PUBLIC), read.device_id)
    envelope = sealer.seal(read.read_id, encode_read(read))
    header, plaintext = Opener([load_private_key(PRIVATE)]).open(envelope)
    assert header.read_id == read.read_id and header.device_id == read.device_id
    assert decode_read(plaintext) == read
    assert read.plate.encode() not in envelope or len(read.plate) < 4  # short strings may occur by chance


def _envelope(device="cam-a", plate="7ABC123"):
    read = PlateRead(new_read_id(), device, "lane-1", dt.datetime.now(dt.timezone.utc), plate, 0.9, (1, 2, 3, 4))
    return read, Sealer(load_public_key(PUBLIC), device).seal(read.read_id, encode_read(read))


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_any_single_byte_change_is_detected(data):
    _, envelope = _envelope()
    i = data.draw(st.integers(0, len(envelope) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = bytearray(envelope)
    tampered[i] ^= flip
    with pytest.raises(EnvelopeError) as info:
        Opener([load_private_key(PRIVATE)]).open(bytes(tampered))
    assert str(info.value) == "envelope could not be opened"


def test_truncation_and_wrong_key_are_the_same_opaque_error():
    _, envelope = _envelope()
    other_private, _ = generate_keypair()
    errors = []
    for bad_input, key in ((envelope[:40], PRIVATE), (envelope[:-1], PRIVATE), (envelope, other_private),
                           (b"", PRIVATE), (b"ALE1" + b"\0" * 100, PRIVATE)):
        with pytest.raises(EnvelopeError) as info:
            Opener([load_private_key(key)]).open(bad_input)
        errors.append(str(info.value))
    assert len(set(errors)) == 1


def test_rotated_keys_still_open_old_envelopes():
    old_private = PRIVATE
    new_private, _ = generate_keypair()
    _, envelope = _envelope()
    opener = Opener([load_private_key(new_private), load_private_key(old_private)])
    assert opener.open(envelope)[0].device_id == "cam-a"


def test_session_key_rotates_after_max_records():
    sealer = Sealer(load_public_key(PUBLIC), "cam-a", max_records=2)
    heads = [EnvelopeHeader.parse(sealer.seal(new_read_id(), b"{}")).eph_pub for _ in range(5)]
    assert heads[0] == heads[1] != heads[2] == heads[3] != heads[4]


def test_session_key_rotates_after_max_age():
    now = [0.0]
    sealer = Sealer(load_public_key(PUBLIC), "cam-a", max_age=10, clock=lambda: now[0])
    a = EnvelopeHeader.parse(sealer.seal(new_read_id(), b"{}")).eph_pub
    now[0] = 9.9
    b = EnvelopeHeader.parse(sealer.seal(new_read_id(), b"{}")).eph_pub
    now[0] = 10.0
    c = EnvelopeHeader.parse(sealer.seal(new_read_id(), b"{}")).eph_pub
    assert a == b != c


@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=50))
def test_batch_round_trips(envelopes):
    bid = new_read_id()
    batch = decode_batch(encode_batch(bid, envelopes))
    assert batch.batch_id == bid and list(batch.envelopes) == envelopes


@given(st.binary(max_size=300))
def test_random_bytes_never_decode_as_anything_but_malformed(data):
    for decode in (decode_batch, decode_read, decode_ack):
        try:
            decode(data)
        except MalformedMessage:
            pass


def test_ack_round_trip():
    ack = Ack(new_read_id(), (new_read_id(), new_read_id()), ((new_read_id(), "undecryptable"),))
    assert decode_ack(encode_ack(ack)) == ack


def test_read_validation_rejects_bad_fields_without_echoing_the_plate():
    base = dict(read_id=new_read_id(), device_id="cam-a", camera_id="lane-1",
                captured_at=dt.datetime.now(dt.timezone.utc), plate="7ABC123", confidence=0.5, box=(1, 2, 3, 4))
    utc = dt.timezone.utc
    for change in ({"plate": "7abc 123"}, {"confidence": 1.5}, {"captured_at": dt.datetime.now()},
                   {"captured_at": dt.datetime(999, 1, 1, tzinfo=utc)},  # years that do not sort or expire as times
                   {"captured_at": dt.datetime(1999, 12, 31, tzinfo=utc)}, {"captured_at": dt.datetime(9999, 1, 1, tzinfo=utc)},
                   {"device_id": "Cam A"}, {"box": (1, 2, 3)}, {"read_id": "nope"},
                   {"alternates": tuple(Alternate("A", 0.1) for _ in range(6))}):
        with pytest.raises(MalformedMessage) as info:
            PlateRead(**{**base, **change})
        assert "7ABC" not in str(info.value)
    assert "7ABC123" not in repr(PlateRead(**base))


def test_read_ids_are_random_and_carry_no_time():
    """A stolen device's outbox holds read ids in clear: a UUIDv7 said when each
    read was taken (issue 20.3). Version 4: 122 random bits."""
    ids = [new_read_id() for _ in range(200)]
    assert len(set(ids)) == 200
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)


def test_topics():
    t = Topics()
    assert t.reads("cam-a") == "alpr/v1/devices/cam-a/reads"
    assert t.device_of("alpr/v1/devices/cam-a/reads") == "cam-a"
    for bad in ("alpr/v1/devices/cam-a/ack", "alpr/v1/devices/CAM/reads", "x/alpr/v1/devices/cam-a/reads",
                "alpr/v1/devices/a/b/reads"):
        assert t.device_of(bad) is None
    assert t.reads_subscription("g") == "$share/g/alpr/v1/devices/+/reads"
    with pytest.raises(ValueError):
        t.reads("../x")


def test_normalise_and_fold():
    assert normalise_plate(" 7abc-123 ") == "7ABC123"
    assert fold_confusables("O0DQ I1L 8B 5S 2Z") == "0000 111 88 55 22"


def test_ids_and_plates_with_a_trailing_newline_are_refused():
    """A '$' in a validation pattern also matches before a final newline; an id
    with one reached the broker ACL as two lines."""
    from edge_agent.wire.topics import validate_device_id

    with pytest.raises(ValueError, match="device id"):
        validate_device_id("gate-7\n")
    base = dict(read_id=new_read_id(), device_id="cam-a", camera_id="lane-1",
                captured_at=dt.datetime.now(dt.timezone.utc), plate="7ABC123", confidence=0.5, box=(1, 2, 3, 4))
    for change in ({"device_id": "cam-a\n"}, {"camera_id": "lane-1\n"}, {"plate": "7ABC123\n"}):
        with pytest.raises(MalformedMessage):
            PlateRead(**{**base, **change})
