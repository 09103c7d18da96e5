"""Signed tokens (capture.links): the format the reader takes, old links included."""

import pytest
from itsdangerous import URLSafeSerializer

from capture import links


@pytest.mark.parametrize("value", ["42", "Ab3xYz_09:123456", "résumé", "x" * 200])
def test_token_is_what_the_serializer_writes_uncompressed(app, value):
    with app.app_context():
        token = links.make("open", value)
        serializer = URLSafeSerializer(app.config["SECRET_KEY"], salt="capture.open")
        assert not token.startswith(".")
        assert serializer.loads(token) == value
        assert links.read("open", token) == value
        if len(value) < 40:  # too short to compress: the serializer's own token
            assert token == serializer.dumps(value)


def test_a_compressed_token_of_an_older_email_still_reads(app):
    with app.app_context():
        value = "ref" * 60
        old = URLSafeSerializer(app.config["SECRET_KEY"], salt="capture.unsubscribe").dumps(value)
        assert old.startswith(".")  # compressed, as tokens could be before
        assert links.read("unsubscribe", old) == value
        assert links.read_unsubscribe(
            URLSafeSerializer(app.config["SECRET_KEY"], salt="capture.unsubscribe")
            .dumps("Ab3x:77")) == ("Ab3x", 77)


def test_a_token_is_tied_to_its_purpose_and_its_signature(app):
    with app.app_context():
        token = links.make("open", "42")
        assert links.read("unsubscribe", token) is None
        payload, signature = token.split(".")
        flipped = "A" if signature[5] != "A" else "B"
        assert links.read("open", f"{payload}.{signature[:5]}{flipped}{signature[6:]}") is None
