"""The paper's geometry: a DSAE with vector latents f and z_t for one fixed frame size, and the frame-by-frame
baseline in the same geometry."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch

from bitstream.format import BitstreamError, BitstreamWriter, Header, Segment
from dsaecodec import codec, train, zoo
from dsaecodec.models.dsae import DSAE, DSAEConfig
from dsaecodec.models.frame import FrameConfig, FrameVAE
from dsaecodec.models.rnn import RNNCodec, RNNConfig
from helpers import assert_resume_is_exact, encode_with_reconstruction, synthetic_clip

SIZE = 32


def tiny_global(use_f: bool = True) -> DSAE:
    torch.manual_seed(0)
    config = DSAEConfig(channels=8, f_channels=6, z_channels=3, hidden_channels=5, lambdas=(0.001, 0.01),
                        use_f=use_f, variant="full" if use_f else "factorised", frame_size=SIZE)
    return DSAE(config)


@pytest.fixture(scope="module")
def global_model(tmp_path_factory) -> str:
    """Name of a tiny random-init global DSAE registered like a shipped model."""
    model = tiny_global().eval()
    model.update_tables()
    path = tmp_path_factory.mktemp("weights") / "tiny-global.pt"
    sha = zoo.save_weights(model, "dsae", path)
    card = zoo.ModelCard(name="tiny-global", family="dsae", domain="tests", weights=str(path), sha256=sha,
                         training="random initialisation")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(zoo.MODELS, card.name, card)
        yield card.name


@pytest.mark.parametrize("use_f", [True, False])
def test_latents_are_vectors_and_decoding_is_exact(use_f):
    model = tiny_global(use_f)
    x = torch.rand(2, 5, 3, SIZE, SIZE)
    out = model(x, 1)
    assert out["x_hat"].shape == x.shape and out["z_bits"] > 0 and (out["f_bits"] > 0) == use_f
    model.eval()
    model.update_tables()
    streams, x_hat = model.compress_segment(x[0], 1)
    assert model.latent_shape(SIZE, SIZE) == (1, 1)
    assert (streams.static_symbols, streams.dynamic_symbols) == model.symbol_counts(5, (1, 1)) == (6 * use_f, 5 * 3)
    assert torch.equal(model.decompress_segment(streams, 1, (1, 1)), x_hat)
    assert model.has_static_latent == use_f


def tiny_global_baseline(family: str) -> torch.nn.Module:
    """frame, rnn (its state read from the reconstructions) or rnn-latents (from the decoded latents)."""
    torch.manual_seed(0)
    if family == "frame":
        return FrameVAE(FrameConfig(channels=8, latent_channels=6, lambdas=(0.001, 0.01), frame_size=SIZE))
    return RNNCodec(RNNConfig(channels=8, latent_channels=6, hidden_channels=5, feature_channels=4,
                              lambdas=(0.001, 0.01), frame_size=SIZE,
                              state_from="latents" if family == "rnn-latents" else "reconstructions"))


@pytest.mark.parametrize("family, symbols_per_frame", [("frame", 6 + 6), ("rnn", 6), ("rnn-latents", 6)])
def test_the_global_baselines_code_vectors_and_decode_exactly(family, symbols_per_frame):
    """frame: y_t and its hyper-latent, one vector each per frame; rnn: y_t, one vector per frame."""
    model = tiny_global_baseline(family)
    x = torch.rand(2, 5, 3, SIZE, SIZE)
    out = model(x, 1)
    assert out["x_hat"].shape == x.shape and out["z_bits"] > 0 and out["f_bits"] == 0
    model.eval()
    model.update_tables()
    streams, x_hat = model.compress_segment(x[0], 1)
    assert model.latent_shape(SIZE, SIZE) == (1, 1)
    assert (streams.static_symbols, streams.dynamic_symbols) == model.symbol_counts(5, (1, 1))
    assert streams.static == b"" and streams.dynamic_symbols == 5 * symbols_per_frame
    assert torch.equal(model.decompress_segment(streams, 1, (1, 1)), x_hat)
    with pytest.raises(ValueError, match=f"only {SIZE}x{SIZE} frames"):
        model.latent_shape(SIZE, 2 * SIZE)


@pytest.mark.parametrize("config", [FrameConfig(), RNNConfig(), DSAEConfig()])
def test_spatial_models_save_their_config_as_before_vector_latents(config):
    assert "frame_size" not in config.to_dict() and "latent_channels" not in FrameConfig().to_dict()


def test_the_prior_of_z_is_an_lstm_on_vectors():
    prior = tiny_global().z_prior
    assert prior.cell.gates.kernel_size == (1, 1) and all(
        layer.kernel_size == (1, 1) for layer in prior.head if isinstance(layer, torch.nn.Conv2d))


def test_frame_size_must_be_a_multiple_of_16():
    with pytest.raises(ValueError, match="multiple of 16"):
        DSAE(DSAEConfig(frame_size=40))


def test_codec_round_trip_and_wrong_sizes_refused(global_model):
    clip = synthetic_clip(11, SIZE, SIZE)
    data, reconstruction = encode_with_reconstruction(clip, model_name=global_model, quality=1, segment_length=4)
    np.testing.assert_array_equal(codec.decode(data), reconstruction)
    with pytest.raises(ValueError, match=f"only {SIZE}x{SIZE} frames"):
        codec.encode(synthetic_clip(3, SIZE, 48), model_name=global_model, quality=1)
    # a file that declares another frame size for this model: one clear error, nothing decoded
    card = zoo.MODELS[global_model]
    out = io.BytesIO()
    writer = BitstreamWriter(out, Header(model_name=card.name, weights_fingerprint=bytes.fromhex(card.sha256)[:8],
                                         width=48, height=SIZE, frame_count=0, fps_num=25, fps_den=1, segment_length=4))
    writer.write_segment(Segment(frame_count=4, quality=16, f_symbols=6, z_symbols=12, f_payload=b"", z_payload=b""))
    writer.close()
    with pytest.raises(BitstreamError, match=f"only {SIZE}x{SIZE} frames"):
        codec.Decoder(out.getvalue())


def test_generation_draws_vector_latents(global_model):
    frames = np.concatenate(list(codec.generate(6, model_name=global_model, quality=1, size=(SIZE, SIZE),
                                                segment_length=4)))
    assert frames.shape == (6, SIZE, SIZE, 3)


@pytest.mark.parametrize("dataset, extra", [("sprites", []), ("balls", ["--crop", "32"]),
                                            ("sprites", ["--family", "frame", "--latent-channels", "4"]),
                                            ("sprites", ["--family", "rnn", "--latent-channels", "4"])])
def test_training_with_global_latents(tmp_path, capsys, dataset, extra):
    train.main(["--out", str(tmp_path / "g.pt"), "--dataset", dataset, "--global-latents", "--channels", "8",
                "--f-channels", "4", "--z-channels", "2", "--hidden-channels", "4", "--batch", "2", "--frames", "3",
                "--validation-clips", "1", "--threads", "1", "--lambdas", "0.001", "0.01", "--steps", "2", *extra])
    assert re.search(r"step 2 q1: coded [0-9.]+ bpp", "".join(capsys.readouterr()))
    model = zoo.load_weights(tmp_path / "g.pt")
    assert model.frame_size == (64 if dataset == "sprites" else 32)


def test_global_latents_only_on_a_fixed_size_domain(tmp_path):
    with pytest.raises(SystemExit, match="--global-latents"):
        train.main(["--out", str(tmp_path / "g.pt"), "--global-latents", "--dataset", "clips"])


def test_resume_at_a_validation_step_continues_exactly(tmp_path):
    """Validation refits the quantiles of vector latents in place: a run stopped right after it must continue
    from the refitted state."""
    common = ["--dataset", "balls", "--global-latents", "--crop", "32", "--channels", "8", "--f-channels", "4",
              "--z-channels", "2", "--hidden-channels", "4", "--batch", "2", "--frames", "3", "--validation-clips",
              "1", "--threads", "1", "--lambdas", "0.001", "0.01", "--steps", "6", "--validate-every", "2",
              "--checkpoint-every", "2"]
    assert_resume_is_exact(tmp_path, common, stop_after=4)


@pytest.mark.parametrize("family", ["dsae", "dsae-nof", "frame", "rnn", "rnn-latents"])
def test_every_family_samples_frames_from_its_priors(family):
    model = tiny_global(family == "dsae") if family.startswith("dsae") else tiny_global_baseline(family)
    model.eval()
    model.update_tables()
    draw = lambda seed: model.sample(7, 1, (1, 1), np.random.default_rng(seed))  # noqa: E731
    frames = draw(0)
    assert frames.shape == (7, 3, SIZE, SIZE) and frames.dtype == torch.uint8
    assert torch.equal(frames, draw(0)) and not torch.equal(frames, draw(1))


def test_sampled_symbols_follow_the_coded_densities():
    from dsaecodec.entropy import SCALE_TABLE, GaussianCoder, scale_index
    from dsaecodec.models.layers import gain

    rng = np.random.default_rng(0)
    scale = torch.full((20_000,), 3.0)
    drawn = GaussianCoder().sample(None, scale, torch.ones(()), rng)
    assert torch.equal(drawn, drawn.round()) and abs(drawn.mean()) < 0.1
    assert abs(drawn.std() / SCALE_TABLE[scale_index(scale)[0]] - 1) < 0.05  # rounding adds 1/12 to the variance
    model = tiny_global().eval()
    model.update_tables()
    coder, f_gain = model.f_entropy[1], gain(model.f_log_gain, 1)
    drawn = coder.sample((20_000, 1, 1), f_gain, rng)
    assert drawn.shape == (20_000, 6, 1, 1)
    median, offset = coder.quantiles[0, 0, 1].item(), coder._offset[0].item()
    symbols = (drawn[:, 0] * f_gain[0, 0] - offset - median).round().long().flatten()
    pmf = coder.pmfs()[0] / coder.pmfs()[0].sum()
    frequencies = np.bincount(symbols.numpy(), minlength=len(pmf)) / len(symbols)
    assert np.abs(frequencies - pmf).max() < 0.02
