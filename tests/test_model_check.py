"""The sentence encoder's model file is hashed once, not at every start, and a different file is
still refused in one line; deciding ``backend = "auto"`` does not load the model."""
from __future__ import annotations

import hashlib
import os

import pytest

from digestd.rank import embeddings, model_check

real_model = pytest.mark.skipif(not embeddings.installed(), reason=f"the sentence encoder is not installed: {embeddings.INSTALL_HINT}")


@pytest.fixture
def hashes(tmp_path, monkeypatch):
    """Stamps kept under tmp_path, and a count of the files hashed in full."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    seen: list = []
    real = embeddings.file_sha256

    def counting(path):
        seen.append(path)
        return real(path)
    monkeypatch.setattr(embeddings, "file_sha256", counting)
    return seen


def write_model(path, data: bytes) -> str:
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)                  # what an install does: a new file in its place
    return hashlib.sha256(data).hexdigest()


def test_a_model_file_found_good_once_is_not_hashed_again_at_the_next_start(tmp_path, hashes):
    model = tmp_path / "model.onnx"
    good = write_model(model, b"weights" * 1000)
    embeddings.check_model(model, good, trust_stamp=True)
    embeddings.check_model(model, good, trust_stamp=True)
    assert hashes == [model]
    assert model_check.known_good(model, good)


def test_a_model_file_replaced_by_another_is_hashed_again_and_refused_in_one_line(tmp_path, hashes):
    model = tmp_path / "model.onnx"
    good = write_model(model, b"weights" * 1000)
    embeddings.check_model(model, good, trust_stamp=True)
    write_model(model, b"weightz" * 1000)              # same size, different bytes
    with pytest.raises(embeddings.EmbeddingsUnavailable) as e:
        embeddings.check_model(model, good, trust_stamp=True)
    assert str(e.value).startswith(f"{model}: sha256 {embeddings.file_sha256(model)} is not the pinned {good}; ")
    assert "\n" not in str(e.value)
    assert len(hashes) == 3                              # good once, the swap, and the message above


def test_a_model_file_cut_short_in_place_is_hashed_again_even_with_its_old_modification_time(tmp_path, hashes):
    model = tmp_path / "model.onnx"
    good = write_model(model, b"weights" * 1000)
    embeddings.check_model(model, good, trust_stamp=True)
    st = os.stat(model)
    os.truncate(model, st.st_size - 1)
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(embeddings.EmbeddingsUnavailable):
        embeddings.check_model(model, good, trust_stamp=True)


def test_loading_the_model_always_hashes_the_file_it_reads(tmp_path, hashes):
    model = tmp_path / "model.onnx"
    good = write_model(model, b"weights" * 1000)
    embeddings.check_model(model, good, trust_stamp=True)
    embeddings.check_model(model, good)
    assert hashes == [model, model]


def test_unwritable_stamps_only_mean_hashing_each_time(tmp_path, hashes, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    model = tmp_path / "model.onnx"
    good = write_model(model, b"weights" * 1000)
    embeddings.check_model(model, good, trust_stamp=True)
    embeddings.check_model(model, good, trust_stamp=True)
    assert hashes == [model, model]


def test_a_damaged_stamps_file_is_ignored(tmp_path, hashes):
    model_check.stamps_path().parent.mkdir(parents=True)
    model_check.stamps_path().write_text("{not json")
    model = tmp_path / "model.onnx"
    good = write_model(model, b"weights" * 1000)
    embeddings.check_model(model, good, trust_stamp=True)
    embeddings.check_model(model, good, trust_stamp=True)
    assert hashes == [model]


@real_model
@pytest.mark.embeddings
def test_choosing_the_auto_backend_checks_the_model_without_loading_it(hashes, monkeypatch):
    monkeypatch.setattr(embeddings, "_CACHE", {})
    monkeypatch.setattr(embeddings, "_RUNNABLE", {})
    assert embeddings.resolve_backend("auto") == "embeddings"
    assert embeddings.load_embedder().session is None
    monkeypatch.setattr(embeddings, "_RUNNABLE", {})
    assert embeddings.resolve_backend("auto") == "embeddings"
    assert len(hashes) == 1
