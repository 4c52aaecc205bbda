"""Prediction ids: every id of a request verifies and carries its class; a changed class, nonce or
signature, another key or another spelling does not verify."""

from __future__ import annotations

from toolkit.serve.prediction_ids import PredictionIds


def test_ids_of_a_request_verify_with_their_class_and_are_unique():
    ids = PredictionIds(b"k" * 32)
    classes = [0, 1, 1, 0, 2] * 30
    issued = ids.issue_many(classes)
    assert [ids.predicted_index(i) for i in issued] == classes
    assert len(set(issued)) == len(issued) and len(set(issued) | set(ids.issue_many(classes))) == 2 * len(issued)


def test_tampered_ids_and_other_keys_do_not_verify():
    ids = PredictionIds(b"k" * 32)
    nonce, index, signature = ids.issue(1).split(".")
    assert ids.predicted_index(f"{nonce}.0.{signature}") is None  # the class changed
    assert ids.predicted_index(f"{nonce[:-1]}{'0' if nonce[-1] != '0' else '1'}.1.{signature}") is None
    assert ids.predicted_index(f"{nonce}.1.{signature[::-1]}") is None
    assert PredictionIds(b"other").predicted_index(f"{nonce}.1.{signature}") is None
    assert PredictionIds(b"x" * 100).predicted_index(PredictionIds(b"x" * 100).issue(3)) == 3  # keys over 64 bytes
    for junk in ("", "nonsense", "a.b.c", None, 7, f"{nonce}.99999.{signature}"):
        assert ids.predicted_index(junk) is None


def test_an_id_has_exactly_one_spelling():
    """ASCII only, the class index without leading zeros, nothing after the MAC: another spelling of a
    valid id (another script's digit, `01`, a trailing newline) is an unknown id, not a second label."""
    ids = PredictionIds(b"k" * 32)
    valid = ids.issue(1)
    nonce, index, signature = valid.split(".")
    assert ids.predicted_index(valid) == 1
    for other in (f"{nonce}.01.{signature}", f"{nonce}.\u0661.{signature}", f"{nonce}.1.{signature}\n", f"{nonce}.1.{signature} ",
                  f"{nonce.upper()}.1.{signature}", f"{nonce}.1.{signature.upper()}", f"{nonce}.+1.{signature}", f" {valid}"):
        assert ids.predicted_index(other) is None, other
    zero = ids.issue(0)
    assert ids.predicted_index(zero) == 0 and ids.predicted_index(zero.replace(".0.", ".00.")) is None


def test_a_forked_worker_issues_ids_of_its_own():
    """Workers are forked from one process (toolkit serve --workers): they must not repeat its nonces."""
    import os

    from toolkit.serve.prediction_ids import PredictionIds

    ids = PredictionIds(b"key")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, ids.issue_many([1, 0])[0].encode())
        os._exit(0)
    os.waitpid(pid, 0)
    theirs = os.read(read, 200).decode()
    ours = ids.issue_many([1, 0])[0]
    assert theirs != ours and theirs[:16] != ours[:16]  # another process nonce, not only another counter value
    assert ids.predicted_index(theirs) == 1 and ids.predicted_index(ours) == 1
