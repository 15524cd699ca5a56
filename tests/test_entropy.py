"""The entropy coders (dsaecodec/entropy.py) and CompressAI's layers rewritten in models/layers.py: the same
numbers as CompressAI where CompressAI is installed (a test dependency only), and the package never imports it."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from bitstream.coder import SYMBOL_BOUND, SymbolDecoder, SymbolEncoder
from dsaecodec import zoo
from dsaecodec.entropy import FactorisedCoder, GaussianCoder, LowerBound, quantized_cdf
from dsaecodec.models.layers import GDN, subpel_conv3x3


def trained_coder(channels: int = 4, seed: int = 0) -> FactorisedCoder:
    """A factorised coder whose density is not the initial one (a few steps towards N(1, 3) data), tables built."""
    torch.manual_seed(seed)
    coder = FactorisedCoder(channels)
    optimiser = torch.optim.Adam(coder.parameters(), lr=0.05)
    for _ in range(30):
        optimiser.zero_grad()
        (coder(torch.randn(16, channels, 4, 4) * 3 + 1, torch.ones(1, channels, 1, 1))[1] + coder.loss()).backward()
        optimiser.step()
    coder.eval()
    coder.update()
    return coder


# --- the factorised coder ----------------------------------------------------------------------------------------

def test_factorised_likelihoods_sum_to_one_over_the_integers():
    coder = trained_coder()
    values = torch.arange(-200.0, 201.0)[None, None].expand(4, 1, -1)
    total = coder._likelihood(values)[0].sum(dim=-1)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-4)
    pmfs = coder.pmfs()
    assert [len(p) for p in pmfs] == (coder._cdf_length - 2).tolist()
    assert all(abs(p.sum() / 2**16 - 1) < 0.01 and p.min() >= 1 for p in pmfs)


def test_factorised_training_step_rounds_straight_through_and_counts_noisy_bits():
    coder = trained_coder()
    coder.train()
    y = (torch.randn(2, 4, 3, 3) * 2).requires_grad_()
    gain = torch.full((1, 4, 1, 1), 2.0)
    y_hat, noisy = coder(y, gain)
    median = coder.quantiles[:, 0, 1].detach()[None, :, None, None]
    assert torch.equal(y_hat, (torch.round(y * gain - median) + median) / gain)
    y_hat.sum().backward()
    assert torch.allclose(y.grad, torch.ones_like(y))  # straight through
    coder.eval()
    rounded = coder(y, gain)[1]
    assert noisy.ndim == rounded.ndim == 0 and torch.isfinite(noisy) and noisy != rounded
    assert coder.loss().requires_grad and coder.loss() >= 0


def test_factorised_codes_round_trip_and_clamps_into_its_tables():
    coder = trained_coder()
    gain = torch.tensor([1.0, 2.0, 0.5, 4.0])[None, :, None, None]
    y = torch.randn(3, 4, 2, 5) * 2
    y[0, 0, 0, 0], y[1, 2, 1, 3] = 1e4, -1e4  # far outside the tables
    encoder = SymbolEncoder()
    encoded = coder.encode(y, gain, encoder)
    decoded = coder.decode(SymbolDecoder(encoder.to_bytes()), (3, 2, 5), gain)
    assert torch.equal(encoded, decoded) and encoded.is_contiguous()
    medians = coder.quantiles[:, 0, 1].detach()[None, :, None, None]
    centred = torch.round(y * gain - medians)
    offset, largest = coder._offset[None, :, None, None].float(), (coder._cdf_length - 3)[None, :, None, None].float()
    clamped = torch.minimum(torch.maximum(centred, offset), offset + largest)
    assert torch.allclose(decoded * gain, clamped + medians, atol=1e-4) and not torch.equal(clamped, centred)
    sampled = coder.sample((3, 2, 5), gain, np.random.default_rng(0))
    assert sampled.shape == y.shape and torch.equal(sampled, coder.sample((3, 2, 5), gain, np.random.default_rng(0)))


def test_fit_quantiles_puts_the_tails_at_their_targets():
    coder = trained_coder()
    coder.fit_quantiles()
    logits = coder._logits_cumulative(coder.quantiles.detach(), stop_gradient=True)
    assert torch.allclose(logits, coder.target.expand_as(logits), atol=1e-2)
    assert coder.loss() < 0.1


def test_tables_need_update():
    with pytest.raises(ValueError, match="update"):
        FactorisedCoder(2).pmfs()


# --- the integer CDF builder -------------------------------------------------------------------------------------

def random_pmfs() -> list[np.ndarray]:
    """pmfs of 2..300 symbols: smooth, spiky, with zeros and with mass too small for a 16-bit unit."""
    rng = np.random.default_rng(1)
    pmfs = []
    for k in range(40):
        n = int(rng.integers(2, 300))
        pmf = rng.dirichlet(np.full(n, [0.05, 1.0, 20.0][k % 3]))
        if k % 4 == 0:
            pmf[rng.integers(0, n, size=max(1, n // 5))] = 0.0
        if k % 5 == 0:
            pmf[: n // 2] = 1e-9
        pmfs.append((pmf / max(pmf.sum(), 1e-30)).astype(np.float32))
    pmfs += [np.array([1.0, 0.0], np.float32), np.array([0.5, 0.5, 1e-12], np.float32),
             np.array([1e-7] * 3 + [1.0], np.float32)]
    return pmfs


def test_quantized_cdf_is_a_valid_table():
    for pmf in random_pmfs():
        cdf = quantized_cdf(pmf)
        assert cdf.dtype == np.int32 and len(cdf) == len(pmf) + 1
        assert cdf[0] == 0 and cdf[-1] == 2**16 and (np.diff(cdf) >= 1).all()
    for bad in ([0.0, 0.0], [0.5, -0.1], [np.nan, 1.0]):
        with pytest.raises(ValueError):
            quantized_cdf(np.array(bad, np.float32))


def test_quantized_cdf_matches_compressai():
    cxx = pytest.importorskip("compressai._CXX")
    for pmf in random_pmfs():
        assert quantized_cdf(pmf).tolist() == cxx.pmf_to_quantized_cdf(pmf.tolist(), 16)


# --- equivalence with CompressAI -----------------------------------------------------------------------------------

def test_factorised_coder_computes_what_compressais_entropy_bottleneck_does():
    entropy_models = pytest.importorskip("compressai.entropy_models")
    torch.manual_seed(3)
    theirs = entropy_models.EntropyBottleneck(5)
    torch.manual_seed(3)
    mine = FactorisedCoder(5)
    assert list(mine.state_dict()) == list(theirs.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))
    trained = trained_coder(5).state_dict()
    for coder in (mine, theirs):
        for name in ("_offset", "_quantized_cdf", "_cdf_length"):
            coder.register_buffer(name, torch.empty_like(trained[name]))
        coder.load_state_dict(trained)
    y = torch.randn(2, 5, 3, 4) * 4
    assert torch.equal(mine.loss(), theirs.loss())
    for training in (True, False):
        mine.train(training), theirs.train(training)
        torch.manual_seed(4)
        bits = mine(y, torch.ones(1, 5, 1, 1))[1]
        torch.manual_seed(4)
        assert torch.equal(bits, -torch.log2(theirs(y)[1]).sum())
    mine.update(), theirs.update(force=True)
    for name in ("_offset", "_quantized_cdf", "_cdf_length"):
        assert torch.equal(getattr(mine, name), getattr(theirs, name))


def shipped_state_dicts() -> dict[str, dict[str, torch.Tensor]]:
    return {name: torch.load(zoo.checked_weights(card), map_location="cpu", weights_only=True)["state_dict"]
            for name, card in zoo.MODELS.items()}


def test_shipped_weights_load_strictly():
    """Every shipped weights file, trained with CompressAI's layers, has exactly our models' names and shapes."""
    for name, state_dict in shipped_state_dicts().items():
        model = zoo.load_model(name)[0]
        assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in state_dict.items()}
        model.load_state_dict(state_dict, strict=True)


def test_tables_of_the_shipped_densities_are_compressais():
    """`update` on every shipped density builds CompressAI's tables. (Not necessarily the shipped ones: the float
    density rounds differently on other CPUs, which is why the tables ship with the weights.)"""
    entropy_models = pytest.importorskip("compressai.entropy_models")
    tables = ("_offset", "_quantized_cdf", "_cdf_length")
    for name, state_dict in shipped_state_dicts().items():
        for prefix in sorted({key.rsplit(".", 1)[0] for key in state_dict if key.endswith("._quantized_cdf")}):
            own = {key[len(prefix) + 1:]: value for key, value in state_dict.items() if key.startswith(prefix + ".")}
            channels = len(own["quantiles"])
            mine, theirs = FactorisedCoder(channels), entropy_models.EntropyBottleneck(channels)
            for coder in (mine, theirs):
                for table in tables:
                    coder.register_buffer(table, torch.empty_like(own[table]))
                coder.load_state_dict(own, strict=True)
            mine.update(), theirs.update(force=True)
            assert all(torch.equal(getattr(mine, t), getattr(theirs, t)) for t in tables), (name, prefix)


def test_gdn_and_subpel_convolution_compute_what_compressais_do():
    layers = pytest.importorskip("compressai.layers")
    x = torch.randn(2, 6, 5, 7)
    for inverse in (False, True):
        mine, theirs = GDN(6, inverse=inverse), layers.GDN(6, inverse=inverse)
        assert list(mine.state_dict()) == list(theirs.state_dict())
        with torch.no_grad():  # a trained-looking state: positive, off-diagonal gamma
            theirs.gamma.add_(torch.rand(6, 6) * 0.1), theirs.beta.add_(torch.rand(6))
        mine.load_state_dict(theirs.state_dict(), strict=True)
        outputs = []
        for layer in (mine, theirs):
            inputs = x.clone().requires_grad_()
            out = layer(inputs)
            (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
            outputs.append((out, inputs.grad, layer.beta.grad, layer.gamma.grad))
        assert all(torch.equal(a, b) for a, b in zip(*outputs))
    torch.manual_seed(5)
    mine = subpel_conv3x3(6, 4, 2)
    torch.manual_seed(5)
    theirs = layers.subpel_conv3x3(6, 4, 2)
    assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))
    assert torch.equal(mine(x), theirs(x)) and mine(x).shape == (2, 4, 10, 14)


def test_lower_bound_lets_values_below_it_rise():
    bound = LowerBound(1.0)
    x = torch.tensor([0.5, 0.5, 2.0], requires_grad=True)
    out = bound(x)
    assert out.tolist() == [1.0, 1.0, 2.0]
    (out * torch.tensor([1.0, -1.0, 1.0])).sum().backward()  # descent moves x[0] down, x[1] up
    assert x.grad.tolist() == [0.0, -1.0, 1.0]


# --- the Gaussian coder ------------------------------------------------------------------------------------------

def test_gaussian_likelihoods_sum_to_one_over_the_symbols():
    symbols = torch.arange(-SYMBOL_BOUND, SYMBOL_BOUND + 1.0)[:, None]
    for mu, scale in ((0.0, 0.05), (0.3, 1.0), (-2.7, 40.0)):
        total = GaussianCoder.likelihood(symbols + mu, torch.tensor(mu), torch.tensor(scale)).sum()
        assert abs(float(total) - 1) < 1e-4


def test_gaussian_training_step_rounds_around_the_mean():
    coder = GaussianCoder()
    y, mu = (torch.randn(3, 4, 2, 2) * 5).requires_grad_(), torch.randn(3, 4, 2, 2)
    scale, gain = torch.rand(3, 4, 2, 2) + 0.5, torch.full((1, 4, 1, 1), 3.0)
    torch.manual_seed(0)
    y_hat, noisy = coder.forward(y, mu, scale, gain, training=True)
    assert torch.allclose(y_hat * gain - mu * gain, torch.round(y * gain - mu * gain), atol=1e-4)
    y_hat.sum().backward()
    assert torch.allclose(y.grad, torch.ones_like(y))
    rounded = coder.forward(y, mu, scale, gain, training=False)[1]
    assert torch.isfinite(noisy) and noisy != rounded
    assert torch.equal(coder.forward(y, None, scale, gain, False)[0] * gain, torch.round(y * gain) / gain * gain)


def test_gaussian_codes_round_trip_and_clamps_to_the_symbol_bound():
    coder = GaussianCoder()
    y = torch.randn(2, 3, 4, 5) * 10
    y[0, 0, 0, 0] = 1e6
    mu, scale, gain = torch.randn(2, 3, 4, 5), torch.rand(2, 3, 4, 5) * 20, torch.full((1, 3, 1, 1), 0.5)
    encoder = SymbolEncoder()
    encoded = [coder.encode(y, mu, scale, gain, encoder), coder.encode(y, None, scale, gain, encoder)]
    decoder = SymbolDecoder(encoder.to_bytes())
    decoded = [coder.decode(decoder, mu, scale, gain), coder.decode(decoder, None, scale, gain)]
    assert all(torch.equal(a, b) for a, b in zip(encoded, decoded))
    assert float(decoded[1][0, 0, 0, 0] * gain[0, 0]) == SYMBOL_BOUND
    drawn = coder.sample(mu, scale, gain, np.random.default_rng(0))
    assert drawn.shape == y.shape and torch.equal(drawn, coder.sample(mu, scale, gain, np.random.default_rng(0)))


# --- start-up ----------------------------------------------------------------------------------------------------

def test_the_package_never_imports_compressai():
    script = ("import pkgutil, importlib, sys, dsaecodec; "
              "[importlib.import_module(m.name) for m in pkgutil.walk_packages(dsaecodec.__path__, 'dsaecodec.')]; "
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'compressai', 'torch_geometric'}))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_rates_are_float32_under_bf16_autocast():
    """bf16 training (`train --bf16`) rounds the transforms only: the coders' training steps and the z prior compute
    in float32 from the (bf16) values they are given, exactly as without autocast."""
    from dsaecodec.priors import DynamicsPrior

    coder, gaussian, prior = trained_coder().train(), GaussianCoder(), DynamicsPrior(4, 8)
    torch.manual_seed(1)
    y = (torch.randn(2, 4, 3, 3) * 3).bfloat16()
    mu, scale, gain = torch.randn(2, 4, 3, 3).bfloat16(), torch.rand(2, 4, 3, 3).bfloat16() + 0.1, torch.ones(1, 4, 1, 1)
    runs = []
    for autocast in (False, True):
        torch.manual_seed(2)  # the same noise in both runs
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            f_hat, f_bits = coder(y, gain)
            y_hat, y_bits = gaussian.forward(y, mu, scale, gain, True)
            prior_mu, prior_scale, _ = prior.step(y.float(), None)
        runs.append((f_hat, f_bits, y_hat, y_bits, prior_mu, prior_scale))
    for plain, autocast in zip(*runs):
        assert autocast.dtype == torch.float32 and torch.equal(plain, autocast)
