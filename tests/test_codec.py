"""The codec end to end on a tiny random model: bit-exact decoding, any size, any length, random access."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch

from bitstream.format import BitstreamReader
from dsaecodec import codec, zoo
from helpers import encode_with_reconstruction, synthetic_clip


@pytest.mark.parametrize("frames, height, width", [(20, 37, 29), (1, 16, 16), (3, 61, 97)])
def test_decoder_output_equals_encoder_reconstruction(tiny_model, frames, height, width):
    clip = synthetic_clip(frames, height, width)
    data, reconstruction = encode_with_reconstruction(clip, model_name=tiny_model, quality=1, segment_length=8)
    decoded = codec.decode(data)
    assert decoded.shape == (frames, height, width, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, reconstruction)


def test_header_records_geometry(tiny_model):
    from fractions import Fraction

    data = codec.encode(synthetic_clip(11, 20, 30), fps=Fraction(30000, 1001), model_name=tiny_model,
                        quality=0.5, segment_length=4)
    reader = BitstreamReader(data)
    header = reader.header
    assert (header.width, header.height, header.frame_count) == (30, 20, 11)
    assert (header.fps_num, header.fps_den, header.segment_length) == (30000, 1001, 4)
    assert [reader.segment_quality(k) for k in range(3)] == [8, 8, 8]  # 0.5 in steps of 1/16
    assert header.model_name == tiny_model and header.segment_count == 3


def test_decoding_ignores_torch_thread_count(tiny_model):
    data = codec.encode(synthetic_clip(9, 48, 64), model_name=tiny_model, quality=1)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = codec.decode(data)
        torch.set_num_threads(2)
        double = codec.decode(data)
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_array_equal(single, double)


def test_random_access_matches_sequential_decode(tiny_model):
    data = codec.encode(synthetic_clip(10, 32, 32), model_name=tiny_model, quality=1, segment_length=3)
    decoder = codec.Decoder(data)
    sequential = list(decoder)
    assert [len(s) for s in sequential] == [3, 3, 3, 1]
    np.testing.assert_array_equal(decoder[2], sequential[2])


def test_frames_stream_through_the_codec_without_a_segment_of_pixels_held(tiny_model):
    """With one job and no reconstructions, the encoder gives each frame to the model as it is read, and
    `Decoder.frames` gives each decoded frame as it is synthesised: the numpy memory traced at its peak is a few
    frames', not the 64-frame segment's (which the segment-at-a-time path holds: 1.2 MB), and the bytes and frames
    are that path's."""
    import tracemalloc

    height, width, frames = 64, 96, 64
    clip = synthetic_clip(frames, height, width)
    segment_bytes = clip.nbytes

    def fresh_frames():  # each frame a new array that only the codec holds on to
        return (frame.copy() for frame in clip)

    data, reconstruction = encode_with_reconstruction(clip, model_name=tiny_model, quality=1, segment_length=frames)
    tracemalloc.start()
    try:
        out = io.BytesIO()
        coded = list(codec.encode_stream(fresh_frames(), out, model_name=tiny_model, quality=1,
                                         segment_length=frames, reconstructions=False))
        encode_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        decoded_frames = 0
        for frame in codec.Decoder(data).frames(range(1)):
            np.testing.assert_array_equal(frame, reconstruction[decoded_frames])
            decoded_frames += 1
        decode_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.getvalue() == data and [c.reconstruction for c in coded] == [None]
    assert decoded_frames == frames
    assert encode_peak < segment_bytes / 4 and decode_peak < segment_bytes / 4, (encode_peak, decode_peak)


def test_higher_quality_spends_more_bits(tiny_model):
    clip = synthetic_clip(8, 32, 48)
    low = codec.encode(clip, model_name=tiny_model, quality=0)
    high = codec.encode(clip, model_name=tiny_model, quality=1)
    assert len(high) > len(low)


def test_bad_options_and_inputs_raise(tiny_model):
    clip = synthetic_clip(4, 16, 16)
    with pytest.raises(ValueError, match="quality"):
        codec.encode(clip, model_name=tiny_model, quality=5)
    with pytest.raises(ValueError, match="no frames"):
        codec.encode([], model_name=tiny_model, quality=0)
    with pytest.raises(ValueError, match="size changed"):
        codec.encode([clip[0], clip[1][:8]], model_name=tiny_model, quality=0, segment_length=1)
    with pytest.raises(zoo.UnknownModelError):
        codec.encode(clip, model_name="no-such-model")


def test_decoder_refuses_unknown_weights(tiny_model, monkeypatch):
    data = codec.encode(synthetic_clip(2, 16, 16), model_name=tiny_model, quality=0)
    card = zoo.MODELS[tiny_model]
    fingerprint = card.sha256[:16]  # the file holds the first 8 bytes of the weights' sha256
    assert BitstreamReader(data).header.weights_fingerprint == bytes.fromhex(fingerprint)
    assert codec.Decoder(data).card == card
    last_differs = fingerprint[:15] + ("1" if fingerprint[15] == "0" else "0") + card.sha256[16:]
    for other in ("0" * 64, last_differs):
        monkeypatch.setitem(zoo.MODELS, tiny_model, zoo.ModelCard(**{**card.__dict__, "sha256": other}))
        with pytest.raises(zoo.UnknownModelError, match=f"needs model '{tiny_model}' with weights fingerprint "
                                                        f"{fingerprint}, which"):
            codec.Decoder(data)
    # weights that differ only after the first 8 bytes of their sha256 are taken for the same (a 64-bit fingerprint)
    same_prefix = card.sha256[:16] + "0" * 48
    monkeypatch.setitem(zoo.MODELS, tiny_model, zoo.ModelCard(**{**card.__dict__, "sha256": same_prefix}))
    assert zoo.card_for(tiny_model, fingerprint).sha256 == same_prefix
    for bad in ("", fingerprint[:15], card.sha256):  # only an 8-byte fingerprint matches
        with pytest.raises(zoo.UnknownModelError):
            zoo.card_for(tiny_model, bad)


class AppendOnly:
    """A binary stream that can only be written to, in order (like a pipe)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk) -> int:
        self.data += chunk
        return len(chunk)

    def seek(self, *args):
        raise OSError("not seekable")

    tell = seek


def test_encode_stream_writes_to_a_stream_that_cannot_seek(tiny_model):
    clip = synthetic_clip(9, 16, 16)
    out = AppendOnly()
    for _ in codec.encode_stream(iter(clip), out, model_name=tiny_model, quality=1, segment_length=4):
        pass
    assert bytes(out.data) == codec.encode(clip, model_name=tiny_model, quality=1, segment_length=4)


def test_resolve_takes_a_shipped_name_or_a_weights_file(tiny_model, tiny_weights_file, tmp_path):
    assert zoo.resolve("dsae-natural") == "dsae-natural"
    assert zoo.resolve(str(tiny_weights_file("another-run"))) == "another-run" and "another-run" in zoo.MODELS
    for unknown in ("no-such-model", str(tmp_path / "missing.pt")):
        with pytest.raises(zoo.UnknownModelError):
            zoo.resolve(unknown)


def test_a_registered_weights_file_codes_like_a_shipped_model(tiny_model, tiny_weights_file, tmp_path):
    weights = tiny_weights_file("fresh-run")
    name = zoo.register_weights_file(weights)
    assert name == "fresh-run" and zoo.register_weights_file(weights) == name  # twice: a no-op
    frames = synthetic_clip(3, 16, 16)
    data = codec.encode(frames, model_name=name, quality=0)
    np.testing.assert_array_equal(codec.decode(data), codec.decode(codec.encode(frames, model_name=tiny_model,
                                                                                quality=0)))

    taken = tmp_path / "dsae-natural.pt"  # a shipped model's name, other weights
    shutil.copy(weights, taken)
    with pytest.raises(zoo.UnknownModelError, match="taken"):
        zoo.register_weights_file(taken)
    with pytest.raises(zoo.UnknownModelError, match="no weights file"):
        zoo.register_weights_file(tmp_path / "missing.pt")
    for bad_name in ("modèle", "x" * 65):  # the .dsae header holds 1..64 printable ASCII characters
        shutil.copy(weights, tmp_path / f"{bad_name}.pt")
        with pytest.raises(zoo.UnknownModelError, match="printable ASCII"):
            zoo.register_weights_file(tmp_path / f"{bad_name}.pt")
    (tmp_path / "notes.pt").write_text("not weights")
    with pytest.raises(zoo.UnknownModelError, match="not a dsaecodec weights file"):
        zoo.register_weights_file(tmp_path / "notes.pt")
    link = tmp_path / "latest.pt"  # named by the link, not by its target
    link.symlink_to(weights)
    assert zoo.register_weights_file(link) == "latest"


def test_a_written_card_is_what_the_registry_reads(tiny_weights_file):
    weights = tiny_weights_file("shipped-run")
    card = zoo.write_card(weights, domain="tests", training="a few steps")
    model = zoo.load_weights(weights)
    assert (card.family, card.qualities, card.sha256) == ("dsae", model.qualities, zoo.sha256_of(weights))
    assert card.parameters == sum(p.numel() for p in model.parameters())
    assert zoo.shipped_cards(weights.parent) == {"shipped-run": card}
