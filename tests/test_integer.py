"""The integer entropy models (dsaecodec/integer.py): exact layers, tables the same everywhere, indices that no
float rounding moves, and files that decode under other CPU kernels in fresh processes."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dsaecodec import integer, zoo
from dsaecodec.entropy import scale_index
from dsaecodec.integer import INPUT_BOUND, IntegerConv2d, IntegerGain, round_shift
from dsaecodec.models.layers import GDN
from dsaecodec.priors import DynamicsPrior
from helpers import RECONSTRUCTION_DRIVEN, load_script, synthetic_clip


def reference_conv(x: np.ndarray, weight: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """Plain int64 cross-correlation (B, C_in, H, W) x (C_out, C_in, k, k), zero padding."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    k = weight.shape[-1]
    height, width = (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
    out = np.zeros((x.shape[0], weight.shape[0], height, width), dtype=np.int64)
    for i in range(height):
        for j in range(width):
            patch = x[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            out[:, :, i, j] = np.einsum("bchw,ochw->bo", patch, weight)
    return out


def reference_conv_transpose(x: np.ndarray, weight: np.ndarray, stride: int, padding: int,
                             output_padding: int) -> np.ndarray:
    """Plain int64 transposed convolution (B, C_in, H, W) x (C_in, C_out, k, k): each input scattered."""
    b, _, height, width = x.shape
    k = weight.shape[-1]
    full = np.zeros((b, weight.shape[1], (height - 1) * stride + k, (width - 1) * stride + k), dtype=np.int64)
    for i in range(height):
        for j in range(width):
            contribution = np.einsum("bc,cohw->bohw", x[:, :, i, j], weight)
            full[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += contribution
    full = np.pad(full, ((0, 0), (0, 0), (0, output_padding), (0, output_padding)))
    return full[:, :, padding:full.shape[2] - padding, padding:full.shape[3] - padding]


def random_activations(shape, generator: torch.Generator) -> torch.Tensor:
    """int64 activations over the whole allowed range, some beyond it (which the layers clamp)."""
    return torch.randint(-2 * INPUT_BOUND, 2 * INPUT_BOUND, shape, generator=generator, dtype=torch.int64)


@pytest.mark.parametrize("stride", [1, 2])
def test_integer_conv_equals_an_int64_reference(stride):
    torch.manual_seed(0)
    layer = nn.Conv2d(6, 5, 3, stride=stride, padding=1)
    x = random_activations((2, 6, 7, 9), torch.Generator().manual_seed(1))
    converted = IntegerConv2d(layer)
    weight = converted.weight.numpy().astype(np.int64)
    assert np.abs(weight).max() <= 2**integer.WEIGHT_BITS and np.array_equal(weight, converted.weight.numpy())
    expected = reference_conv(x.clamp(-INPUT_BOUND, INPUT_BOUND).numpy(), weight, stride, 1)
    expected = round_shift(torch.from_numpy(expected), converted.shift) + converted.bias
    assert torch.equal(converted(x), expected)


def test_integer_transposed_conv_equals_an_int64_reference():
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(4, 3, 5, stride=2, padding=2, output_padding=1)
    x = random_activations((1, 4, 3, 4), torch.Generator().manual_seed(2))
    converted = IntegerConv2d(layer)
    expected = reference_conv_transpose(x.clamp(-INPUT_BOUND, INPUT_BOUND).numpy(),
                                        converted.weight.numpy().astype(np.int64), 2, 2, 1)
    expected = round_shift(torch.from_numpy(expected), converted.shift) + converted.bias
    assert torch.equal(converted(x), expected)


def test_conversion_keeps_every_partial_sum_below_2_to_the_53():
    layer = nn.Conv2d(64, 1, 9, padding=4, bias=False)  # fan-in 5184 > 2^12: the weights lose precision to fit
    nn.init.constant_(layer.weight, 0.5)
    converted = IntegerConv2d(layer)
    assert converted.tap_sum * INPUT_BOUND <= 2**53 - 1 < 2 * converted.tap_sum * INPUT_BOUND
    x = torch.full((1, 64, 9, 9), 10 * INPUT_BOUND, dtype=torch.int64)  # clamped to INPUT_BOUND
    centre = converted(x)[0, 0, 4, 4]
    assert centre == round_shift(torch.tensor(converted.tap_sum * INPUT_BOUND), converted.shift)


def test_a_different_summation_order_gives_the_same_integers():
    torch.manual_seed(0)
    layer = nn.Conv2d(12, 8, 3, padding=1)
    x = random_activations((1, 12, 6, 6), torch.Generator().manual_seed(3))
    order = torch.randperm(12)
    shuffled = nn.Conv2d(12, 8, 3, padding=1)
    with torch.no_grad():
        shuffled.weight.copy_(layer.weight[:, order])
        shuffled.bias.copy_(layer.bias)
    assert torch.equal(IntegerConv2d(layer)(x), IntegerConv2d(shuffled)(x[:, order]))


def test_tables_are_pinned_and_close_to_the_functions():
    digest = hashlib.sha256()
    for name, bits in (("sigmoid", 16), ("tanh", 16), ("softplus", 24)):
        digest.update(integer.table(name, bits).numpy().tobytes())
    # decimal arithmetic: these integers are the same on every platform (a change here changes every file)
    assert digest.hexdigest()[:16] == "09de57bb529a2388"
    x = torch.linspace(-20, 20, 4001, dtype=torch.float64)
    fixed = integer.to_fixed(x)
    for function, reference, bits in ((integer.sigmoid, torch.sigmoid, 16), (integer.tanh, torch.tanh, 16),
                                      (integer.softplus, torch.nn.functional.softplus, 24)):
        error = (function(fixed).double() / 2**bits - reference(fixed.double() / 2**16)).abs().max()
        assert error < 3 * 2**-16, function.__name__  # interpolation (<= 2.3e-5 for tanh) and rounding


def test_leaky_relu_rounds_its_slope_product():
    x = torch.tensor([-65536 * 3, -7, 0, 5], dtype=torch.int64)
    assert integer.IntegerLeakyReLU(0.1)(x).tolist() == [round(-3 * 6554), -1, 0, 5]
    assert integer.IntegerLeakyReLU(0.0)(x).tolist() == [0, 0, 0, 5]
    generator = torch.Generator().manual_seed(5)
    x = torch.cat([torch.arange(-70_000, 70_000), torch.randint(-2**36, 2**36, (100_000,), generator=generator)])
    for slope in (0.0, 0.1, 0.5, 0.2 + 2**-17, 1.0):  # 0.5: every odd negative input a tie
        relu = integer.IntegerLeakyReLU(slope)
        assert torch.equal(relu(x), torch.where(x >= 0, x, round_shift(x * relu.slope, integer.FRACTION_BITS)))
        relu.input_bound = 2**36 + 1  # the float64 path, up to its bound
        assert relu.float_exact and _float64_agrees(relu, x)
        relu.input_bound = None
        assert not relu.float_exact
    assert not integer.IntegerLeakyReLU(0.5).float_exact
    relu = integer.IntegerLeakyReLU(1.0)
    relu.input_bound = (integer.EXACT_BOUND - 2**15) // integer.ONE + 1  # x * slope + 2^15 would pass 2^53
    assert not relu.float_exact
    with pytest.raises(ValueError, match="slope"):
        integer.IntegerLeakyReLU(1.5)


def test_floor_sqrt_is_exact_around_every_square_up_to_2_to_the_52():
    roots = torch.cat([torch.arange(0, 3000), torch.arange(2**26 - 3000, 2**26 + 1),
                       torch.randint(0, 2**26, (20_000,), generator=torch.Generator().manual_seed(0))])
    for offset in (-1, 0, 1):
        n = (roots * roots + offset).clamp(0, 2**52)
        assert torch.equal(integer.floor_sqrt(n), torch.tensor([math.isqrt(int(v)) for v in n]))


def test_floor_sqrt_corrects_a_square_root_one_unit_off(monkeypatch):
    """The comparisons guard against a square root that is only faithfully rounded: fake one a unit in the last place
    off, each way, where that moves the floor (n = k^2 and k^2 - 1 near 2^52)."""
    k = torch.tensor([3, 4, 2**26 - 1, 2**26], dtype=torch.int64)
    n = torch.cat([k * k, k * k - 1])
    expected = torch.tensor([math.isqrt(int(v)) for v in n])
    real_sqrt = torch.sqrt
    for direction in (-math.inf, math.inf):
        fake = lambda x, direction=direction: torch.nextafter(real_sqrt(x), torch.tensor(direction, dtype=x.dtype))  # noqa: E731
        monkeypatch.setattr(torch, "sqrt", fake)
        assert not torch.equal(torch.sqrt(n.double()).floor().long(), expected)  # the floor alone would be wrong
        assert torch.equal(integer.floor_sqrt(n), expected)
        monkeypatch.undo()


def test_converting_a_gdn_leaves_the_random_stream_alone():
    gdn = GDN(4, inverse=True)
    torch.manual_seed(5)
    integer.IntegerInverseGDN(gdn)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))


def test_integer_synthesis_layers_follow_their_float_layers():
    """Inverse GDN, batch norm (eval), pixel shuffle and sigmoid, converted, within rounding of the float layers."""
    torch.manual_seed(0)
    gdn = GDN(6, inverse=True)
    with torch.no_grad():
        gdn.gamma.copy_(gdn.gamma_reparam.init(torch.rand(6, 6) * 0.2))
    norm = nn.BatchNorm2d(6)
    norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2), nn.init.normal_(norm.weight)
    network = nn.Sequential(nn.Conv2d(6, 24, 3, padding=1), nn.PixelShuffle(2), gdn, norm.eval(), nn.Sigmoid())
    x = torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        expected = network(x)
    got = integer.to_float(integer.convert(network)(integer.to_fixed(x)))
    assert got.shape == expected.shape and (got - expected).abs().max() < 2e-3
    with pytest.raises(ValueError, match="inverse GDN"):
        integer.convert(GDN(6))


def _float64_agrees(layer, x: torch.Tensor) -> bool:
    """`layer`'s float64 path gives the integers of its int64 path on int64 activations x."""
    return torch.equal(layer.exact_float(x.double()).long(), getattr(layer, "int64", layer)(x))


def test_float64_layers_give_the_int64_integers():
    """Synthesis layers in float64 (`exact_float`): the integers of the int64 layers, layer by layer, over the whole
    input range and beyond, through ties of the rounding (odd inputs halved, odd multiples of 1/2 through a GDN) and a
    GDN norm past its limit; a whole
    synthesis transform alike; layers whose bounds do not hold keep the int64 path."""
    from dsaecodec.models.layers import synthesis_transform

    generator = torch.Generator().manual_seed(3)
    halve = nn.Conv2d(1, 1, 1)  # weight 0.5: an odd input is a tie, rounded half up, both signs
    with torch.no_grad():
        halve.weight.fill_(0.5), halve.bias.fill_(0.0)
    odd = torch.arange(-41, 42, 2, dtype=torch.int64).reshape(1, 1, 6, 7)
    assert _float64_agrees(integer.IntegerConv2d(halve), odd)
    assert integer.IntegerConv2d(halve)(odd).tolist() == [[[[(v + 1) // 2 for v in row] for row in odd[0, 0].tolist()]]]

    vector = nn.Conv2d(5, 3, 1)  # a 1x1 kernel on one 1x1 map: a matrix-vector product
    with torch.no_grad():
        vector.weight.copy_(torch.randn(3, 5, 1, 1, generator=generator)), vector.bias.copy_(torch.randn(3) * 40)
    layer, x = integer.IntegerConv2d(vector), random_activations((1, 5, 1, 1), generator)
    assert layer.matrix is not None and layer.float_exact
    sums = torch.nn.functional.conv2d(x.double().clamp(-INPUT_BOUND, INPUT_BOUND), layer.weight).long()
    assert torch.equal(layer(x), round_shift(sums, layer.shift) + layer.bias)
    assert torch.equal(layer.int64(x), layer(x))

    network = synthesis_transform(5, 4)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        for gdn in (layer for layer in network if isinstance(layer, GDN)):
            gdn.gamma.copy_(gdn.gamma_reparam.init(torch.rand(4, 4, generator=generator) * 1000))
    converted = integer.convert(network)
    assert converted.float_exact
    layers = [part for layer in converted.layers for part in getattr(layer, "layers", [layer])]
    for layer in layers:
        channels = layer.weight.shape[1] if isinstance(layer, integer.IntegerConv2d) else 4 * (
            4 if isinstance(layer, integer.IntegerPixelShuffle) else 1)
        for x in (random_activations((2, channels, 3, 4), generator),
                  torch.randint(-2**17, 2**17, (2, channels, 3, 4), generator=generator, dtype=torch.int64),
                  torch.randint(-8, 8, (2, channels, 3, 4), generator=generator) * 2**15):  # GDN: x * root ties
            assert _float64_agrees(layer, x)
    gdn = next(layer for layer in layers if isinstance(layer, integer.IntegerInverseGDN))
    big = random_activations((2, 4, 3, 4), generator)
    squares = round_shift(big.clamp(-INPUT_BOUND, INPUT_BOUND) ** 2, integer.FRACTION_BITS)
    assert (gdn.norm(squares) > gdn.NORM_LIMIT * integer.ONE).any()  # the norm's clamp is reached
    x = random_activations((2, 5, 3, 4), generator)
    by_layers = x
    for layer in layers:
        by_layers = getattr(layer, "int64", layer)(by_layers)
    assert torch.equal(converted(x), by_layers)

    wide = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        wide.weight.fill_(0.5), wide.bias.fill_(1e8)  # a bias beyond 2^53 / 2^shift
    assert not integer.IntegerConv2d(wide).float_exact
    with torch.no_grad():
        wide.weight.fill_(2.0**16), wide.bias.fill_(0.0)  # weights that need shift < 1
    assert not integer.IntegerConv2d(wide).float_exact
    # a leaky ReLU after a convolution knows its input's bound: the z priors' heads run in float64
    head = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(4, 2, 3, padding=1))
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 3)
    converted = integer.convert(head)
    assert converted.float_exact and converted.layers[1].input_bound == converted.layers[0].output_bound
    for x in (random_activations((2, 3, 5, 4), generator), torch.full((1, 3, 5, 4), INPUT_BOUND),
              torch.full((1, 3, 5, 4), -INPUT_BOUND)):
        by_layers = x
        for layer in converted.layers:
            by_layers = getattr(layer, "int64", layer)(by_layers)
            assert by_layers.abs().max() < getattr(layer, "output_bound", math.inf)
        assert torch.equal(converted(x), by_layers)  # the float64 path: exact_float throughout
    assert not integer.convert(nn.Sequential(nn.LeakyReLU(0.1), nn.Conv2d(2, 2, 1))).float_exact  # no bound


def test_integer_gain_interpolates_exactly_and_picks_the_float_scale_index():
    log_gain = torch.tensor([[-1.5, 0.0, 2.0], [0.25, 0.5, 3.0]])
    half = IntegerGain(log_gain, 0.5)
    expected = [round(float(np.exp(-(a + b) / 2) * 2**16)) for a, b in zip(*log_gain.double().tolist())]
    assert half.step.tolist() == expected
    scale = torch.exp(torch.linspace(-6, 7, 3 * 400, dtype=torch.float64)).reshape(1, 3, 20, 20)
    gain = 2.0**16 / half.step.double()[None, :, None, None]
    fixed_index = half.scale_index(integer.to_fixed(scale, integer.SCALE_BITS))
    float_index = scale_index((scale * gain).float())
    assert (fixed_index != float_index).float().mean() < 0.01  # only at the float32 table's edges


def test_softplus_index_is_the_index_of_the_softplus():
    """`IntegerGain.softplus_index` skips the softplus: the same indices at, and one either side of, every
    activation where an index changes, over the table, past its ends, and at random."""
    generator = torch.Generator().manual_seed(6)
    for log_gain, quality in ((torch.tensor([[-6.5, -1.5, 0.0, 2.0, 6.0]]), 0.0),
                              (torch.randn(3, 7, generator=generator) * 2, 1.25)):
        gain = IntegerGain(log_gain, quality)
        edges = gain._raw_thresholds  # (C, 63)
        raw = torch.cat([edges - 1, edges, edges + 1,
                         torch.randint(-20 * 2**16, 20 * 2**16, (edges.shape[0], 4000), generator=generator),
                         torch.randint(-2**40, 2**40, (edges.shape[0], 1000), generator=generator),
                         torch.tensor([-2**62, -2**54 - 1, 2**54 + 1]).expand(edges.shape[0], -1)], dim=1)
        raw = raw.T.reshape(-1, edges.shape[0], 1, 1)  # (B, C, 1, 1)
        index = gain.softplus_index(raw)
        assert torch.equal(index, gain.scale_index(integer.softplus(raw)))
        assert len(torch.unique(index)) > 30


def test_one_ulp_of_float_noise_moves_no_index_and_no_mean():
    # The float latents a platform computes (z_hat for the synthesis, or a float prior's inputs) may differ in the
    # last bit; read onto the fixed-point grid they are the same integers, so the same means and indices follow.
    # (The weights need no such margin: they are converted from the file's float32 values, the same bits on every
    # machine, and a 1-ulp change of a weight does move some rounded integer weights.)
    torch.manual_seed(0)
    prior = DynamicsPrior(4, 8)
    for parameter in prior.parameters():
        nn.init.normal_(parameter, std=0.3)
    gain = IntegerGain(torch.zeros(1, 4), 0.0)
    z_int = torch.randint(-3 * 2**16, 3 * 2**16, (2, 1, 4, 5, 6), generator=torch.Generator().manual_seed(4))

    def roll_out(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Means and scale indices of two steps of the integer prior on float latents."""
        integer_prior, state, out = prior.integer(), None, []
        for z in inputs:
            mu, scale_raw, state = integer_prior.step(integer.to_fixed(z), state)
            out += [mu, gain.softplus_index(scale_raw)]
        return out

    exact = [integer.to_float(z) for z in z_int]
    reference = roll_out(exact)
    assert len(torch.unique(reference[-1])) > 5  # indices of many scales
    for direction in (-np.inf, np.inf):
        noisy = [torch.nextafter(z, torch.tensor(direction)) for z in exact]
        assert all((a != b).all() for a, b in zip(noisy, exact))
        assert all(torch.equal(a, b) for a, b in zip(roll_out(noisy), reference))


# --- fresh processes under other kernels --------------------------------------------------------------------
# benchmarks/portability.py runs the same check on real clips for every shipped model; its decoding script records
# a digest of each entropy coder's calls (equal digests: equal latents), and the encoding one here does the same.
portability = load_script("portability")
run_in_process = portability.run_in_process

ENCODE_SCRIPT = portability.RECORDING + """
from helpers import encode_with_reconstruction, synthetic_clip
gaussian, categorical = coder.SymbolEncoder.gaussian, coder.SymbolEncoder.categorical
def encode_gaussian(self, symbols, index):
    gaussian(self, symbols, index)
    note(self, index, symbols)
def encode_categorical(self, symbols, pmf):
    categorical(self, symbols, pmf)
    note(self, pmf, [len(symbols)], symbols)
coder.SymbolEncoder.gaussian, coder.SymbolEncoder.categorical = encode_gaussian, encode_categorical
symbols, frames = {}, {}
for path in sys.argv[3:]:
    model_name = path.rsplit("/", 1)[-1].removesuffix(".dsae")
    data, reconstruction = encode_with_reconstruction(synthetic_clip(2, 64, 64), model_name=model_name,
                                                      quality=2.5625, segment_length=2)
    open(path, "wb").write(data)
    symbols[path], frames[path] = streams(), hashlib.sha256(reconstruction.tobytes()).hexdigest()
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "symbols": symbols, "frames": frames}))
"""


def coding_models() -> list[str]:
    """A DSAE, a frame VAE and the RNN codecs, spatial and vector, one of them driven by its reconstructions
    (registered in this process)."""
    return ["dsae-natural", "frame-natural", "rnn-natural", "rnn-sprites", zoo.resolve(RECONSTRUCTION_DRIVEN)]


def exact_pixels(path: str | Path) -> bool:
    """Whether the model that coded `path` (named by the file) decodes in integer arithmetic throughout: an RNN
    codec whose state reads its reconstructions."""
    return getattr(zoo.load_model(Path(path).stem)[0].config, "state_from", None) == "reconstructions"


@pytest.fixture(scope="module")
def coded_files(tmp_path_factory) -> list[Path]:
    """A 2-frame 64x64 clip coded by each of `coding_models` (fractional quality: interpolated gains)."""
    from dsaecodec import codec

    folder, clip = tmp_path_factory.mktemp("integer"), synthetic_clip(2, 64, 64)
    paths = []
    for model_name in coding_models():
        path = folder / f"{model_name}.dsae"
        path.write_bytes(codec.encode(clip, model_name=model_name, quality=2.5625, segment_length=2))
        paths.append(path)
    return paths


def test_files_decode_to_the_same_symbols_under_other_cpu_kernels(coded_files):
    decoded = {kernels: run_in_process(portability.DECODE_SCRIPT, kernels, coded_files,
                                       weights=[RECONSTRUCTION_DRIVEN]) for kernels in portability.KERNELS}
    assert decoded["sse41"]["capability"] == "DEFAULT"  # torch took the environment's kernel choice
    # an RNN codec whose state reads its reconstructions decodes in integer arithmetic throughout: the same frames too
    exact = [str(path) for path in coded_files if exact_pixels(path)]
    assert exact
    for kernels, result in decoded.items():
        assert not result["errors"] and result["symbols"] == decoded["default"]["symbols"], kernels
        assert all(result["frames"][path] == decoded["default"]["frames"][path] for path in exact), kernels


def test_files_encoded_under_other_cpu_kernels_decode_here(tmp_path):
    """The other direction: a file written under SSE4.1 kernels decodes here to the symbols its encoder coded (the
    encoder's float analysis may choose other symbols there, but encoder and decoder agree on every probability),
    and, for the RNN codecs whose state reads their reconstructions, to the frames its encoder reconstructed."""
    paths = [tmp_path / f"{name}.dsae" for name in coding_models()]
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("this CPU runs the default kernels already")
    encoded = run_in_process(ENCODE_SCRIPT, "sse41", paths, weights=[RECONSTRUCTION_DRIVEN])
    decoded = run_in_process(portability.DECODE_SCRIPT, "default", paths, weights=[RECONSTRUCTION_DRIVEN])
    assert encoded["capability"] == "DEFAULT" and decoded["capability"] != "DEFAULT"
    for path in map(str, paths):
        assert encoded["symbols"][path] == decoded["symbols"][path] and len(encoded["symbols"][path]) >= 1, path
        if exact_pixels(path):
            assert encoded["frames"][path] == decoded["frames"][path], path


def test_integer_parts_are_converted_once_until_the_weights_change():
    from dsaecodec.models.rnn import RNNCodec, RNNConfig

    model = RNNCodec(RNNConfig(channels=8, latent_channels=4, hidden_channels=8, feature_channels=4))
    first = integer.cached(model, "parts", object)
    assert integer.cached(model, "parts", object) is first and integer.cached(model, "other", object) is not first
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.rand(1, 2, 3, 16, 16), 0)["z_bits"].backward()
    optimiser.step()  # an in-place update
    second = integer.cached(model, "parts", object)
    assert second is not first and integer.cached(model, "parts", object) is second
    model.load_state_dict(RNNCodec(model.config).state_dict())  # copied in place
    third = integer.cached(model, "parts", object)
    assert third is not second
    model.to(torch.float64)  # moved: the same parameters, other storage
    assert integer.cached(model, "parts", object) is not third
