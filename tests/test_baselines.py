"""The baselines (frame-by-frame VAE, deterministic RNN) and the DSAE without f are codecs of the same kind as
the DSAE: same interface, bitstream, CLI, quality levels, training pipeline and parameter budget."""
from __future__ import annotations

import hashlib
import io
from fractions import Fraction

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bitstream.format import BitstreamReader
from dsaecodec import codec, integer, train, zoo
from dsaecodec.cli import main as cli_main
from dsaecodec.models.dsae import DSAE, DSAEConfig
from dsaecodec.models.frame import FrameConfig
from dsaecodec.models.rnn import RNNCodec, RNNConfig
from dsaecodec.videoio import VideoWriter, read_video
from helpers import assert_resume_is_exact, encode_with_reconstruction, synthetic_clip

LAMBDAS = (0.001, 0.01)
TINY = {
    "tiny-frame": ("frame", FrameConfig(channels=8, lambdas=LAMBDAS)),
    "tiny-rnn": ("rnn", RNNConfig(channels=8, latent_channels=4, hidden_channels=8, feature_channels=4, lambdas=LAMBDAS)),
    "tiny-rnn-latents": ("rnn", RNNConfig(channels=8, latent_channels=4, hidden_channels=8, feature_channels=4,
                                          lambdas=LAMBDAS, state_from="latents")),
    "tiny-dsae-nof": ("dsae", DSAEConfig(channels=8, z_channels=4, hidden_channels=8, variant="factorised",
                                         use_f=False, lambdas=LAMBDAS)),
}


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """Register one tiny random-init model of each kind in the zoo, like shipped models."""
    folder = tmp_path_factory.mktemp("baseline-weights")
    with pytest.MonkeyPatch.context() as patch:
        for name, (family, config) in TINY.items():
            torch.manual_seed(0)
            model = zoo.FAMILIES[family][0](config).eval()
            model.update_tables()
            sha = zoo.save_weights(model, family, folder / f"{name}.pt")
            patch.setitem(zoo.MODELS, name, zoo.ModelCard(name=name, family=family, domain="tests",
                                                          weights=str(folder / f"{name}.pt"), sha256=sha,
                                                          training="random initialisation"))
        yield


@pytest.fixture(params=sorted(TINY))
def tiny(request, registered) -> str:
    return request.param


@pytest.mark.parametrize("frames, height, width", [(1, 16, 16), (7, 37, 29), (3, 61, 97)])
def test_decoder_output_equals_encoder_reconstruction(tiny, frames, height, width):
    clip = synthetic_clip(frames, height, width)
    data, reconstruction = encode_with_reconstruction(clip, model_name=tiny, quality=1, segment_length=3)
    decoded = codec.decode(data)
    assert decoded.shape == (frames, height, width, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, reconstruction)


def test_segments_hold_the_symbols_the_geometry_needs(tiny):
    data = codec.encode(synthetic_clip(5, 40, 72), model_name=tiny, quality=0, segment_length=2)
    reader = BitstreamReader(data)
    model = zoo.load_model(tiny)[0]
    assert reader.header.model_name == tiny
    for k in range(len(reader)):
        segment = reader.read_segment(k)
        assert (segment.f_symbols, segment.z_symbols) == model.symbol_counts(segment.frame_count, (3, 5))
        assert segment.f_symbols == 0 and segment.f_payload == b""  # no static content: f is empty
        assert len(segment.z_payload) > 0


def test_decoding_ignores_torch_thread_count(tiny):
    data = codec.encode(synthetic_clip(5, 48, 64), model_name=tiny, quality=1, segment_length=4)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = codec.decode(data)
        torch.set_num_threads(2)
        double = codec.decode(data)
        encoded_with_two = codec.encode(synthetic_clip(5, 48, 64), model_name=tiny, quality=1, segment_length=4)
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_array_equal(single, double)
    assert encoded_with_two == data


def test_random_access_matches_sequential_decode(tiny):
    decoder = codec.Decoder(codec.encode(synthetic_clip(7, 32, 32), model_name=tiny, quality=1, segment_length=3))
    sequential = list(decoder)
    assert [len(s) for s in sequential] == [3, 3, 1]
    np.testing.assert_array_equal(decoder[1], sequential[1])


def test_higher_quality_spends_more_bits(tiny):
    clip = synthetic_clip(4, 32, 48)
    assert len(codec.encode(clip, model_name=tiny, quality=1)) > len(codec.encode(clip, model_name=tiny, quality=0))


def test_cli_encodes_with_any_model_and_decodes_without_naming_it(tiny, tmp_path):
    source = tmp_path / "clip.mkv"
    with VideoWriter(source, 40, 24, Fraction(25), lossless=True) as writer:
        for frame in synthetic_clip(5, 24, 40):
            writer.write(frame)
    runner = CliRunner()
    coded, decoded = tmp_path / "clip.dsae", tmp_path / "frames"
    result = runner.invoke(cli_main, ["encode", str(source), "-o", str(coded), "--model", tiny, "-q", "1", "-t", "4"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli_main, ["decode", str(coded), "-o", str(decoded)])
    assert result.exit_code == 0, result.output
    from PIL import Image

    output = np.stack([np.asarray(Image.open(p)) for p in sorted(decoded.iterdir())])
    _, reconstruction = encode_with_reconstruction(read_video(source)[0], model_name=tiny, quality=1, segment_length=4)
    np.testing.assert_array_equal(output, reconstruction)


# --- the same parameter budget ----------------------------------------------------------------------

def default_model(*options: str) -> torch.nn.Module:
    """The model `dsaecodec train` builds with these options and otherwise default sizes."""
    return train.build_model(train.argument_parser().parse_args(["--out", "unused.pt", *options]))


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("options", [("--family", "frame"), ("--family", "rnn"), ("--no-f",),
                                     ("--no-f", "--z-channels", "64")])
def test_default_sizes_are_within_20_percent_of_the_dsae(options):
    dsae = parameters(default_model())
    assert dsae == parameters(DSAE(DSAEConfig())) == 1_250_188
    assert 0.8 * dsae <= parameters(default_model(*options)) <= 1.2 * dsae


def test_default_dsae_parameters_are_unchanged():
    """The shipped DSAE weights must keep loading: names and shapes of the default model are pinned."""
    keys = [(k, tuple(v.shape)) for k, v in DSAE(DSAEConfig()).state_dict().items()]
    assert hashlib.sha256(repr(keys).encode()).hexdigest() == \
        "5b106bf7e65cb9ab1b3c7c302ae49ad1a60fd6b357b19aadcf5cb3214f0f0f48"


@pytest.mark.parametrize("frame_size", [0, 32])
def test_a_latent_driven_state_reads_the_decoded_latents(frame_size):
    """The coding loop's (integer) state follows the float recurrence on the decoded latents y_hat_t-1, not on,
    say, the means they were coded around: non-zero symbols, which a tiny random model would rarely code."""
    torch.manual_seed(0)
    model = RNNCodec(RNNConfig(channels=8, latent_channels=4, hidden_channels=8, feature_channels=4, lambdas=LAMBDAS,
                               frame_size=frame_size, state_from="latents")).eval()
    states, latents = [], []

    def take_symbols(t, hidden, mu, index, y_gain):
        symbols = torch.full_like(mu, 3 - 2 * t)
        states.append(integer.to_float(hidden))
        latents.append(integer.to_float(mu + y_gain.dequantise(symbols)))
        return symbols

    assert list(model._roll_out(1.0, 3, (1, 1) if frame_size else (2, 3), take_symbols, pixels=False)) == [None] * 3
    state = None
    with torch.no_grad():
        for t in range(3):
            state = model.advance(latents[t - 1] if t else None, state, states[0])
            torch.testing.assert_close(state[0], states[t], atol=1e-3, rtol=0)


def test_weights_saved_before_use_f_existed_still_load(tmp_path):
    torch.manual_seed(0)
    model = DSAE(DSAEConfig(channels=8, f_channels=4, z_channels=2, hidden_channels=4, lambdas=LAMBDAS)).eval()
    model.update_tables()
    config = model.config.to_dict()
    del config["use_f"]
    torch.save({"family": "dsae", "config": config, "state_dict": model.state_dict()}, tmp_path / "old.pt")
    loaded = zoo.load_weights(tmp_path / "old.pt")
    assert loaded.config.use_f and loaded.symbol_counts(3, (2, 2)) == model.symbol_counts(3, (2, 2))


# --- the same training pipeline ---------------------------------------------------------------------

TRAIN = ["--dataset", "balls", "--channels", "8", "--f-channels", "4", "--z-channels", "2", "--latent-channels", "4",
         "--hidden-channels", "8", "--batch", "2", "--frames", "3", "--crop", "32", "--validation-clips", "1",
         "--threads", "1", "--lambdas", "0.001", "0.01", "--validate-every", "0"]


@pytest.mark.parametrize("family, extra", [("frame", ()), ("rnn", ()), ("rnn", ("--state-from", "latents")),
                                           ("dsae", ("--no-f",))])
def test_short_training_run_writes_loadable_weights(tmp_path, family, extra, capsys):
    out = tmp_path / "model.pt"
    train.main(["--out", str(out), "--family", family, *extra, "--steps", "5", *TRAIN])
    assert "step 5 q1: coded" in capsys.readouterr().out  # validated through the real coder
    model = zoo.load_weights(out)
    assert isinstance(model, zoo.FAMILIES[family][0]) and model.qualities == 2
    assert model.config.to_dict()["channels"] == 8
    if family == "dsae":
        assert not model.config.use_f and not any("f_entropy" in k or "content" in k for k in model.state_dict())
    if family == "rnn":
        assert model.config.state_from == (extra[1] if extra else "reconstructions")
    pixels = torch.randint(0, 256, (3, 3, 32, 48), dtype=torch.uint8)
    streams, x_hat = model.compress_segment(pixels, 1)
    assert x_hat.dtype == torch.uint8 and x_hat.shape == pixels.shape
    assert torch.equal(model.decompress_segment(streams, 1, (2, 3)), x_hat)
    # uint8 pixels are read as pixel / 255, frame by frame: the same code as the float frames
    assert model.compress_segment(pixels.float() / 255, 1)[0] == streams
    # frames read one at a time from any iterable, with or without the reconstruction: the same streams
    assert model.compress_segment(iter(pixels), 1)[0] == streams
    assert model.compress_segment(iter(pixels), 1, reconstruct=False) == (streams, None)
    frames = list(model.decompress_frames(streams, 1, (2, 3)))
    assert len(frames) == 3 and torch.equal(torch.stack(frames), x_hat)


def test_resume_continues_exactly_without_an_auxiliary_optimiser(tmp_path):
    """The rnn has no EntropyBottleneck, so no quantiles to train: resume must still be exact."""
    assert_resume_is_exact(tmp_path, ["--family", "rnn", "--steps", "4", "--checkpoint-every", "2", *TRAIN],
                           stop_after=2)


def test_no_f_is_a_dsae_option(tmp_path):
    with pytest.raises(SystemExit, match="no-f"):
        train.main(["--out", str(tmp_path / "m.pt"), "--family", "frame", "--no-f", "--steps", "1", *TRAIN])


def test_swap_refuses_models_without_a_static_latent(tiny):
    from bitstream.edit import swap
    from bitstream.format import BitstreamError, BitstreamReader

    data = codec.encode(synthetic_clip(4, 16, 16), model_name=tiny, quality=0)
    with pytest.raises(BitstreamError, match="no static latent f"):
        swap(BitstreamReader(data), BitstreamReader(data), io.BytesIO())


def test_encoder_and_decoder_latents_share_one_memory_layout():
    """g_a's output can be channels-last; convolutions round differently per layout, so the encoder's
    dequantised latents must be laid out as the decoder's (found with frame-natural: 1-LSB differences)."""
    from bitstream import SymbolDecoder, SymbolEncoder
    from dsaecodec.entropy import GaussianCoder

    torch.manual_seed(0)
    model = zoo.FAMILIES["frame"][0](FrameConfig(channels=8, lambdas=LAMBDAS)).eval()
    model.update_tables()
    latent = (torch.randn(2, 8, 3, 5) * 3).contiguous(memory_format=torch.channels_last)
    mu, scale, unit_gain = torch.randn(2, 8, 3, 5), torch.rand(2, 8, 3, 5) + 0.5, torch.ones(1, 8, 1, 1)
    encoder, factorised, gaussian = SymbolEncoder(), model.z_entropy[0], GaussianCoder()
    encoded = [factorised.encode(latent, unit_gain, encoder), gaussian.encode(latent, mu, scale, unit_gain, encoder)]
    decoder = SymbolDecoder(encoder.to_bytes())
    decoded = [factorised.decode(decoder, (2, 3, 5), unit_gain), gaussian.decode(decoder, mu, scale, unit_gain)]
    for mine, theirs in zip(encoded, decoded):
        assert torch.equal(mine, theirs) and mine.stride() == theirs.stride() == latent.contiguous().stride()
