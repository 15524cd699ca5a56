"""Integer networks (Ballé, Johnston & Minnen 2019): the numbers the entropy decoder depends on, computed the
same on every machine.

A float network's output depends on the order in which its kernels sum, and PyTorch picks kernels by instruction
set, thread count and device: one flipped scale index desynchronises the range decoder. So the networks that set
scale indices and means (the DSAE's z prior, the frame VAE's hyper-synthesis, and the RNN codec's decoding loop,
with its synthesis where its state reads its reconstructions) are converted from their trained float weights into
fixed-point ones for coding:

    activations     int64 tensors, value = integer / 2^FRACTION_BITS; each convolution clamps its input to
                    +-ACTIVATION_LIMIT (so |integer| <= INPUT_BOUND = 2^26)
    weights         integers, value = integer / 2^shift, one power-of-two scale per layer, |integer| <= 2^WEIGHT_BITS
    biases          integers at the activations' scale
    convolution     the integer tensors convolved in float64 by PyTorch's ordinary kernels, rescaled by 2^-shift,
                    rounding half up, and the bias added (in one pass: see `IntegerConv2d.exact_float`)
    leaky ReLU      slope rounded to a multiple of 2^-FRACTION_BITS in [0, 1]: max(x, slope * x rounded half up)
    sigmoid, tanh,  tables on a grid of 2^-TABLE_BITS over [-TABLE_RANGE, TABLE_RANGE], interpolated linearly in
    softplus        integers; the tables come from Python's `decimal` (exp and ln correctly rounded), not from a
                    libm whose last bit differs between platforms, so they are the same everywhere
    inverse GDN     squares and norm clamped, the square root the exact integer floor (see IntegerInverseGDN)
    batch norm      (eval) a per-channel affine map, its factor an integer / 2^shift like a weight

Why the float64 convolution is exact, whatever the kernel. An output of channel o is a sum of products w * x over
the taps of its kernel, |x| <= INPUT_BOUND. Conversion checks S_o * INPUT_BOUND <= EXACT_BOUND = 2^53 - 1, where
S_o = sum over the taps of |w|: then every product and every partial sum, in any order, blocking or grouping and
with or without fused multiply-adds, is an integer of magnitude <= S_o * INPUT_BOUND, which float64 holds exactly,
so no operation rounds and every kernel returns the same integer. (For the shipped models S_o * INPUT_BOUND stays
at or below 2^49.3, the largest in the RNN codecs' synthesis: kept with room. Conversion lowers a layer's weight precision
if a layer ever needs it.) This needs kernels that form sums of products: PyTorch's CPU convolutions of float64
are im2col/col2im and GEMM (mkldnn, NNPACK and XNNPACK take no float64, so ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA
and the thread count only change the order of exact operations); on CUDA the layers run with cuDNN off (its FFT
and Winograd algorithms would round), which is GEMM again. A 1x1 kernel on a single 1x1 map (the vector models)
is one matrix-vector product (GEMV): sums of the same products. The bias joins the sums, so the bound checked is
S_o * INPUT_BOUND + |bias| * 2^shift + 2^(shift - 1). The nonlinearities by table are int64 arithmetic.

A sequence of convolutions, leaky ReLUs that follow a convolution (whose output bound they then know), inverse
GDNs and pixel shuffles (the z priors' heads, the RNN codec's past encoder and prior, and its g_s where the state
reads reconstructions) runs in float64 throughout (`exact_float`): the same integers, held as float64 values, and
every step an operation whose exact result is an integer (or an integer / 2^k) below 2^53, which IEEE 754 float64
then returns unrounded. That saves the int64 round trips around every convolution and halves the passes over
memory. Each step states its bound.

The quantities coding needs besides the networks are fixed-point too: `IntegerGain` holds each channel's
quantisation step at a quality (from the float log gains by exact rational arithmetic and a correctly rounded
exp) and maps fixed-point scales to scale indices by integer comparison; since softplus is monotone, it compares
the softplus's input itself with thresholds mapped back through it (`softplus_index`), which skips the table.
"""
from __future__ import annotations

import functools
import itertools
import math
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from fractions import Fraction
from typing import Callable, Hashable, Sequence, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitstream.coder import SCALE_TABLE

FRACTION_BITS = 16  # activations: value = integer / 2^16
ONE = 1 << FRACTION_BITS
ACTIVATION_LIMIT = 1 << 10  # |value| of a convolution's input, enforced by clamping
INPUT_BOUND = ACTIVATION_LIMIT * ONE  # 2^26
WEIGHT_BITS = 15  # |integer weight| <= 2^15
EXACT_BOUND = 2**53 - 1  # every integer of at most this magnitude is a float64
SCALE_BITS = 24  # scales (softplus outputs): value = integer / 2^24, finer for the small scales of large gains
TABLE_BITS = 6  # nonlinearity tables: one entry per 2^-6
TABLE_RANGE = 16  # ... over [-16, 16]; beyond, sigmoid and tanh are +-1 and softplus(x) is x or 0 to < 2^-23
T = TypeVar("T")
_DECIMAL = Context(prec=40, rounding=ROUND_HALF_EVEN)  # every decimal operation here runs in this context (not the
# thread's, which a caller may change): 40 digits, far more than the 24 bits any table entry keeps


def _nearest_integer(value: Decimal) -> int:
    """`value` rounded half to even."""
    return int(value.to_integral_value(rounding=ROUND_HALF_EVEN))


def round_shift(x: Tensor, bits: int) -> Tensor:
    """x / 2^bits (int64) rounded half up; bits <= 0 multiplies by 2^-bits."""
    if bits <= 0:
        return x * (1 << -bits)
    return (x + (1 << (bits - 1))) >> bits


def round_shift_(x: Tensor, bits: int) -> Tensor:
    """`round_shift` in place, for bits >= 1 (x a fresh int64 tensor of the caller's)."""
    return x.add_(1 << (bits - 1)).bitwise_right_shift_(bits)


def round_shift_float(x: Tensor, bits: int) -> Tensor:
    """`round_shift` of float64 integers, in place: floor(x * 2^-bits + 1/2), exact while |x| + 2^(bits-1) <= 2^53."""
    return x.mul_(2.0**-bits).add_(0.5).floor_()


def to_fixed(x: Tensor, bits: int = FRACTION_BITS) -> Tensor:
    """A float tensor as int64 integers / 2^bits, rounded half to even (exact: scaling by 2^bits does not round)."""
    return torch.round(x.double() * 2.0**bits).long()


def to_float(x: Tensor, bits: int = FRACTION_BITS) -> Tensor:
    """int64 integers / 2^bits as a float32 tensor (correctly rounded, so the same everywhere)."""
    return (x.double() / 2.0**bits).float()


# --- convolutions -----------------------------------------------------------------------------------
def weight_shift(weight: Tensor) -> int:
    """The power of two that scales float weights to integers of at most 2^WEIGHT_BITS: |w| * 2^shift < 2^15
    before rounding."""
    largest = float(weight.abs().max())
    return WEIGHT_BITS - math.frexp(largest)[1] if largest > 0 else 0


class IntegerConv2d:
    """A Conv2d or ConvTranspose2d with integer weights, on int64 activations (B, C_in, h, w) -> (B, C_out, h', w').

    Not an `nn.Module`: it is made from a float layer for coding (`convert`) and never saved.
    """

    def __init__(self, layer: nn.Conv2d | nn.ConvTranspose2d):
        weight = layer.weight.detach().double().cpu()
        self.transposed = isinstance(layer, nn.ConvTranspose2d)
        self.stride, self.padding, self.dilation = layer.stride, layer.padding, layer.dilation
        self.output_padding = layer.output_padding if self.transposed else None
        if layer.groups != 1 or layer.padding_mode != "zeros":
            raise ValueError("IntegerConv2d converts ungrouped, zero-padded convolutions only")
        self.shift = weight_shift(weight)
        out_dim = 1 if self.transposed else 0  # weight (out, in, kh, kw), transposed (in, out, kh, kw)
        while True:
            integer_weight = torch.round(weight * 2.0**self.shift)
            reduce = tuple(d for d in range(4) if d != out_dim)
            tap_sum = int(integer_weight.abs().sum(dim=reduce).max())  # S_o, exact: integers below 2^53
            if tap_sum * INPUT_BOUND <= EXACT_BOUND:
                break
            self.shift -= 1
        self.weight = integer_weight.to(layer.weight.device)
        one_tap = not self.transposed and self.weight.shape[2:] == (1, 1) and self.padding == (0, 0)
        self.matrix = self.weight.flatten(1) if one_tap else None  # (out, in): a 1x1 kernel on a 1x1 map
        self.tap_sum = tap_sum
        bias = layer.bias if layer.bias is not None else torch.zeros(self.weight.shape[out_dim])
        self.bias = to_fixed(bias.detach())[None, :, None, None].to(layer.weight.device)
        largest_bias = int(self.bias.abs().max())
        # |output| <= tap_sum * INPUT_BOUND / 2^shift + 1/2 + |bias|: below this bound
        self.output_bound = math.ceil(Fraction(tap_sum * INPUT_BOUND) / Fraction(2)**self.shift) + largest_bias + 1
        # In float64 the bias joins the sums, at their scale and with the rounding's half added: the convolution
        # returns sums + bias * 2^shift + 2^(shift - 1), and floor(that * 2^-shift) = round_shift(sums, shift) +
        # bias. Exact when its magnitude, at most the bound below, is at most EXACT_BOUND (see `exact_float`).
        self.float_exact = (self.shift >= 1
                            and tap_sum * INPUT_BOUND + (largest_bias << self.shift) + (1 << (self.shift - 1))
                            <= EXACT_BOUND)
        self.summed_bias = (self.bias.flatten().double() * 2.0**self.shift + 2.0**(self.shift - 1)
                            if self.float_exact else None)

    def _total(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        """bias + the sums of products w * x (float64, exact) of float64 integers x, clamped here."""
        x = x.clamp(-INPUT_BOUND, INPUT_BOUND)
        if x.is_cuda:
            with torch.backends.cudnn.flags(enabled=False):
                return self._convolve(x, bias)
        return self._convolve(x, bias)

    def _convolve(self, x: Tensor, bias: Tensor | None) -> Tensor:
        if self.matrix is not None and x.shape[0] == 1 and x.shape[2:] == (1, 1):  # one vector: a product (GEMV)
            product = torch.mv(self.matrix, x.view(-1)) if bias is None else torch.addmv(bias, self.matrix, x.view(-1))
            return product.view(1, -1, 1, 1)
        if self.transposed:
            return F.conv_transpose2d(x, self.weight, bias, self.stride, self.padding, self.output_padding, 1,
                                      self.dilation)
        return F.conv2d(x, self.weight, bias, self.stride, self.padding, self.dilation)

    def __call__(self, x: Tensor) -> Tensor:
        return self.exact_float(x.double()).long() if self.float_exact else self.int64(x)

    def int64(self, x: Tensor) -> Tensor:
        """`__call__` with the rescaling in int64: round_shift(sums, shift) + bias."""
        return round_shift(self._total(x.double()).long(), self.shift) + self.bias

    def exact_float(self, x: Tensor) -> Tensor:
        """`__call__` on float64 integers, in float64 (only when `float_exact`): every partial sum of the
        convolution, its bias included, is an integer of magnitude at most EXACT_BOUND, and scaling by 2^-shift
        and the floor do not round."""
        return self._total(x, self.summed_bias).mul_(2.0**-self.shift).floor_()


class IntegerLeakyReLU:
    """max(x, 0) + slope * min(x, 0) on int64 activations, the slope a multiple of 2^-FRACTION_BITS in [0, 1] (0:
    ReLU): max(x, round(slope * x)), as round(slope * x) <= x for x >= 0 and >= x below."""

    def __init__(self, slope: float):
        self.slope = round(slope * ONE)
        if not 0 <= self.slope <= ONE:
            raise ValueError(f"a leaky ReLU converts with a slope in [0, 1], not {slope}")
        self.input_bound: int | None = None  # |input| is below it, where a sequence knows (IntegerSequential)

    @property
    def float_exact(self) -> bool:
        """Whether `exact_float` is exact: x * slope + 2^(FRACTION_BITS - 1) within EXACT_BOUND."""
        return (self.input_bound is not None
                and self.input_bound * self.slope + (1 << (FRACTION_BITS - 1)) <= EXACT_BOUND)

    def __call__(self, x: Tensor) -> Tensor:
        return torch.maximum(x, round_shift_(x * self.slope, FRACTION_BITS))

    def exact_float(self, x: Tensor) -> Tensor:
        """`__call__` on float64 integers below `input_bound`, in float64: x * slope and x * slope + 2^15 are
        integers within EXACT_BOUND, so `round_shift_float` is exact."""
        return torch.maximum(x, round_shift_float(x * self.slope, FRACTION_BITS))


class IntegerAffine:
    """An eval-mode `nn.BatchNorm2d` as the per-channel map x * a + b on int64 activations: a an integer / 2^shift
    (|integer| <= 2^WEIGHT_BITS), b at the activations' scale; the input clamped to +-INPUT_BOUND (|x * a| < 2^42).
    Computed from the layer's float32 parameters in float64 on the CPU (each operation correctly rounded: the same
    integers everywhere), b from the rounded a."""

    float_exact = False  # no float64 path: no synthesis transform that runs in float64 has a batch norm

    def __init__(self, norm: nn.BatchNorm2d):
        if norm.training or not norm.affine or norm.running_mean is None:
            raise ValueError("a batch norm converts in eval mode, with affine parameters and running statistics")
        weight, bias, mean, variance = (t.detach().double().cpu() for t in (norm.weight, norm.bias, norm.running_mean,
                                                                             norm.running_var))
        scale = weight / torch.sqrt(variance + norm.eps)
        self.shift = weight_shift(scale)
        integer_scale = torch.round(scale * 2.0**self.shift)
        offset = bias - mean * integer_scale / 2.0**self.shift
        self.scale = integer_scale.long()[None, :, None, None].to(norm.weight.device)
        self.offset = to_fixed(offset)[None, :, None, None].to(norm.weight.device)

    def __call__(self, x: Tensor) -> Tensor:
        return round_shift(x.clamp(-INPUT_BOUND, INPUT_BOUND) * self.scale, self.shift) + self.offset


def floor_sqrt(n: Tensor) -> Tensor:
    """floor(sqrt(n)) of int64 n in [0, 2^52], exactly: the float64 square root (correctly rounded by IEEE 754, and
    then already exact for these n), and an integer comparison each way that would correct a square root rounded
    one unit off (a faithful rather than correct one, as some fast-math builds give)."""
    root = torch.sqrt(n.double()).floor().long()
    return root - (root * root > n).long() + ((root + 1) * (root + 1) <= n).long()


def floor_sqrt_float(n: Tensor) -> Tensor:
    """`floor_sqrt` of float64 integers n in [0, 2^52], in float64: root <= 2^26, so root^2 and (root + 1)^2
    are integers below 2^53, exact."""
    root = torch.sqrt(n).floor_()
    return root - (root * root > n).double() + ((root + 1) * (root + 1) <= n).double()


class IntegerInverseGDN:
    """Inverse GDN, y_i = x_i * sqrt(beta_i + sum_j gamma_ij x_j^2), on int64 activations.

    x is clamped to +-INPUT_BOUND and each x_j^2 to ACTIVATION_LIMIT (|x_j| <= 32: beyond, the layer saturates);
    the norm, a 1x1 `IntegerConv2d` of the squares with bias beta, is clamped to [0, NORM_LIMIT]; its square root is
    `floor_sqrt(norm * 2^FRACTION_BITS)`, so y = x * root / 2^FRACTION_BITS with every intermediate at most 2^52."""

    NORM_LIMIT = 1 << 20  # |value| of the norm: norm * 2^32 <= 2^52, root <= 2^26, x * root <= 2^52

    def __init__(self, gdn: nn.Module):
        if not gdn.inverse:
            raise ValueError("only the inverse GDN has an integer counterpart (synthesis transforms)")
        channels = gdn.beta.shape[0]
        # no random initialisation (the RNG is the caller's), on the GDN's device (IntegerConv2d keeps its weights there)
        norm = nn.utils.skip_init(nn.Conv2d, channels, channels, 1, device=gdn.beta.device)
        with torch.no_grad():
            norm.weight.copy_(gdn.gamma_reparam(gdn.gamma).reshape(channels, channels, 1, 1))
            norm.bias.copy_(gdn.beta_reparam(gdn.beta))
        self.norm = IntegerConv2d(norm)
        self.float_exact = self.norm.float_exact

    def __call__(self, x: Tensor) -> Tensor:
        x = x.clamp(-INPUT_BOUND, INPUT_BOUND)
        squares = round_shift(x * x, FRACTION_BITS)  # the conv clamps them to INPUT_BOUND
        norm = self.norm(squares).clamp(0, self.NORM_LIMIT * ONE) << FRACTION_BITS
        return round_shift(x * floor_sqrt(norm), FRACTION_BITS)

    def exact_float(self, x: Tensor) -> Tensor:
        """`__call__` on float64 integers, in float64: x^2 and x * root are at most 2^52, and adding 2^15 before
        scaling by 2^-16 keeps them below 2^53, so each floor(v * 2^-16 + 1/2) is exact."""
        x = x.clamp(-INPUT_BOUND, INPUT_BOUND)
        squares = round_shift_float(x * x, FRACTION_BITS)
        norm = self.norm.exact_float(squares).clamp_(0, self.NORM_LIMIT * ONE).mul_(ONE)
        return round_shift_float(floor_sqrt_float(norm).mul_(x), FRACTION_BITS)


class IntegerPixelShuffle:
    """`nn.PixelShuffle`: a rearrangement, exact on integers."""

    float_exact = True

    def __init__(self, factor: int):
        self.factor = factor

    def __call__(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(x, self.factor)

    exact_float = __call__


class IntegerSigmoid:
    """`nn.Sigmoid` on int64 activations (by table, see `sigmoid`)."""

    float_exact = False

    def __call__(self, x: Tensor) -> Tensor:
        return sigmoid(x)


class IntegerSequential:
    """`nn.Sequential` of convolutions (plain and transposed), (leaky) ReLUs, eval-mode batch norms, inverse GDNs,
    pixel shuffles and sigmoids, converted layer by layer; in float64 throughout (`exact_float`) where every layer
    can be. A leaky ReLU can be where it follows a convolution, whose output bound it then knows."""

    def __init__(self, network: nn.Sequential):
        self.layers = [convert(layer) for layer in network]
        for before, layer in zip(self.layers, self.layers[1:]):
            if isinstance(layer, IntegerLeakyReLU) and isinstance(before, IntegerConv2d):
                layer.input_bound = before.output_bound
        self.float_exact = all(layer.float_exact for layer in self.layers)

    def __call__(self, x: Tensor) -> Tensor:
        if self.float_exact:
            return self.exact_float(x.double()).long()
        for layer in self.layers:
            x = layer(x)
        return x

    def exact_float(self, x: Tensor) -> Tensor:
        """`__call__` on float64 integers, in float64 (only when `float_exact`)."""
        for layer in self.layers:
            x = layer.exact_float(x)
        return x


IntegerLayer = (IntegerConv2d | IntegerLeakyReLU | IntegerAffine | IntegerInverseGDN | IntegerPixelShuffle
                | IntegerSigmoid | IntegerSequential)


def convert(layer: nn.Module) -> IntegerLayer:
    """The integer counterpart of a float layer (batch norms in eval mode); ValueError for a layer without one."""
    from dsaecodec.models.layers import GDN  # layers imports entropy, which imports this module

    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        return IntegerConv2d(layer)
    if isinstance(layer, nn.LeakyReLU):
        return IntegerLeakyReLU(layer.negative_slope)
    if isinstance(layer, nn.ReLU):
        return IntegerLeakyReLU(0.0)
    if isinstance(layer, nn.BatchNorm2d):
        return IntegerAffine(layer)
    if isinstance(layer, GDN):
        return IntegerInverseGDN(layer)
    if isinstance(layer, nn.PixelShuffle):
        return IntegerPixelShuffle(layer.upscale_factor)
    if isinstance(layer, nn.Sigmoid):
        return IntegerSigmoid()
    if isinstance(layer, nn.Sequential):
        return IntegerSequential(layer)
    raise ValueError(f"no integer counterpart for {type(layer).__name__}")


def cached(model: nn.Module, key: Hashable, make: Callable[[], T]) -> T:
    """`make()` (an integer network, a level's `IntegerGain`), kept on `model` under `key` until one of its
    parameters or buffers changes: an optimiser step or `load_state_dict` changes a tensor in place, which bumps its
    version counter; `to()` moves its storage. (Writing through `.data` in place would go unseen: nothing here
    does.) Coding converts once per model and quality, not once per segment."""
    stamp = tuple((id(tensor), tensor._version, tensor.data_ptr()) for module in model.modules()  # parameters()
                  for tensor in itertools.chain(module._parameters.values(), module._buffers.values())  # and buffers(),
                  if tensor is not None)  # at half the cost: no names, no deduplication
    store = model.__dict__.setdefault("_integer_parts", {})  # a plain attribute: not state, not a submodule
    if key not in store or store[key][0] != stamp:
        store[key] = (stamp, make())
    return store[key][1]


# --- nonlinearities by table ----------------------------------------------------------------------
def _sigmoid(x: Decimal) -> Decimal:
    return 1 / (1 + (-x).exp())


def _tanh(x: Decimal) -> Decimal:
    return 1 - 2 / (1 + (2 * x).exp())


def _softplus(x: Decimal) -> Decimal:
    return (1 + x.exp()).ln()


_FUNCTIONS = {"sigmoid": _sigmoid, "tanh": _tanh, "softplus": _softplus}


@functools.lru_cache(maxsize=None)
def table(name: str, bits: int) -> Tensor:
    """int64 (2 * TABLE_RANGE * 2^TABLE_BITS + 2,): round(f(x) * 2^bits) at x = -TABLE_RANGE + k / 2^TABLE_BITS,
    one entry past TABLE_RANGE for the interpolation at its end. Decimal arithmetic at 40 digits, then rounded
    half to even: the same integers on every platform."""
    function = _FUNCTIONS[name]
    with localcontext(_DECIMAL):
        points = (Decimal(k - TABLE_RANGE * (1 << TABLE_BITS)) / (1 << TABLE_BITS)  # exact: binary fractions
                  for k in range(2 * TABLE_RANGE * (1 << TABLE_BITS) + 2))
        entries = [_nearest_integer(function(x) * (1 << bits)) for x in points]
    return torch.tensor(entries, dtype=torch.int64)


@functools.lru_cache(maxsize=None)
def _entries_and_steps(name: str, bits: int) -> tuple[Tensor, Tensor]:
    """`table(name, bits)` without its last entry, and the difference of each entry to the next."""
    values = table(name, bits)
    return values[:-1], values[1:] - values[:-1]


class Tables:
    """Functions by table on int64 activations (B, C, ...), value / 2^FRACTION_BITS, as int64 value / 2^bits: one
    function per block of channels (dim 1), e.g. `Tables([("sigmoid", 3 * n), ("tanh", n)])` for an LSTM's four
    gates in one pass; a single block serves every channel, whatever its count. Each function is its `table`,
    interpolated linearly between entries, its input clamped to +-TABLE_RANGE."""

    def __init__(self, blocks: Sequence[tuple[str, int]], bits: int = FRACTION_BITS):
        parts = [_entries_and_steps(name, bits) for name, _ in blocks]
        self.entries, self.steps = torch.cat([e for e, _ in parts]), torch.cat([s for _, s in parts])
        starts = itertools.accumulate((len(e) for e, _ in parts[:-1]), initial=0)  # each block's first entry
        self.offset = (torch.cat([torch.full((channels,), start) for (_, channels), start in zip(blocks, starts)])
                       [None, :, None, None] if len(blocks) > 1 else None)
        self._on_device: dict[torch.device, tuple[Tensor, Tensor, Tensor | None]] = {}

    def __call__(self, x: Tensor) -> Tensor:
        if x.device not in self._on_device:
            self._on_device[x.device] = tuple(None if t is None else t.to(x.device)
                                              for t in (self.entries, self.steps, self.offset))
        entries, steps, offset = self._on_device[x.device]
        step_bits = FRACTION_BITS - TABLE_BITS
        position = x.clamp(-TABLE_RANGE * ONE, TABLE_RANGE * ONE).add_(TABLE_RANGE * ONE)  # 0 .. 2 * TABLE_RANGE * ONE
        index = position >> step_bits
        if offset is not None:
            index += offset
        fraction = position.bitwise_and_((1 << step_bits) - 1)
        return round_shift_(torch.take(steps, index).mul_(fraction), step_bits).add_(torch.take(entries, index))


@functools.lru_cache(maxsize=None)
def _tables(name: str, bits: int) -> Tables:
    return Tables([(name, 0)], bits)


def lookup(x: Tensor, name: str, bits: int = FRACTION_BITS) -> Tensor:
    """f(x) of int64 activations as int64 value / 2^bits, by the table of `name` (see `Tables`)."""
    return _tables(name, bits)(x)


def sigmoid(x: Tensor) -> Tensor:
    """sigmoid of int64 activations, int64 activations in [0, ONE]."""
    return lookup(x, "sigmoid")


def tanh(x: Tensor) -> Tensor:
    """tanh of int64 activations, int64 activations in [-ONE, ONE]."""
    return lookup(x, "tanh")


def softplus(x: Tensor) -> Tensor:
    """softplus of int64 activations, as int64 scales (value / 2^SCALE_BITS); x itself above TABLE_RANGE."""
    return torch.where(x > TABLE_RANGE * ONE, x << (SCALE_BITS - FRACTION_BITS), lookup(x, "softplus", SCALE_BITS))


# --- quantisation steps and scale indices ---------------------------------------------------------
def _count_below(thresholds: Tensor, values: Tensor, right: bool = False) -> Tensor:
    """For values (B, C, h, w) and each channel's sorted thresholds (C, K): how many thresholds of its channel lie
    below each value (int64, (B, C, h, w)); `right`: at or below."""
    by_channel = values.transpose(0, 1).reshape(values.shape[1], -1).contiguous()
    count = torch.searchsorted(thresholds, by_channel, right=right)
    return count.reshape(values.shape[1], values.shape[0], *values.shape[2:]).transpose(0, 1)


class IntegerGain:
    """Each channel's quantisation step 1 / gain at a quality, in fixed point, and what coding does with it.

    `step` int64 (C,): round(exp(-log_gain_q) * 2^FRACTION_BITS), log_gain_q the float32 log gains of the two
    trained levels around `quality` interpolated as `layers.gain` does, in exact rational arithmetic (a file's
    quality is a multiple of 1/16), exp correctly rounded by `decimal`. The float `layers.gain` may differ in its
    last bit between platforms; these integers do not.
    """

    def __init__(self, log_gain: Tensor, quality: float):
        levels = log_gain.detach().cpu().tolist()
        lower = min(int(quality), len(levels) - 1)
        weight = Fraction(quality) - lower
        steps = []
        with localcontext(_DECIMAL):
            for c, low in enumerate(levels[lower]):
                high = levels[lower + 1][c] if weight else 0.0
                log_gain_q = (1 - weight) * Fraction(low) + weight * Fraction(high)  # exact rationals
                steps.append(_nearest_integer((-Decimal(log_gain_q.numerator) / log_gain_q.denominator).exp() * ONE))
        if min(steps) < 1 or max(steps) > INPUT_BOUND:
            raise ValueError(f"quantisation steps must lie in [2^-{FRACTION_BITS}, {ACTIVATION_LIMIT}]")
        self.step = torch.tensor(steps, dtype=torch.int64, device=log_gain.device)
        # Index i counts the table entries below the gained scale, scale / step > SCALE_TABLE[t] for t < 63
        # (as `entropy.scale_index`); for integer scales s / 2^SCALE_BITS that is s > floor(SCALE_TABLE[t] *
        # step * 2^(SCALE_BITS - FRACTION_BITS)), exact in integers: each entry is a float, numerator / 2^k.
        entries = [float(entry).as_integer_ratio() for entry in SCALE_TABLE[:-1]]
        unit = 1 << (SCALE_BITS - FRACTION_BITS)
        self.thresholds = torch.tensor([[numerator * step * unit // denominator for numerator, denominator in entries]
                                        for step in steps], dtype=torch.int64, device=log_gain.device)

    def _channel(self) -> Tensor:
        return self.step[None, :, None, None]

    def scale_index(self, scale: Tensor) -> Tensor:
        """Scale indices (int64) of physical scales (B, C, h, w), int64 value / 2^SCALE_BITS: the smallest table
        entry >= scale * gain, as `entropy.scale_index` picks it."""
        return _count_below(self.thresholds, scale)  # entries < scale

    def softplus_index(self, raw: Tensor) -> Tensor:
        """`scale_index(softplus(raw))` of int64 activations raw (B, C, h, w), without the softplus: `softplus` is
        non-decreasing (its table rises, the interpolation between neighbours stays between them, and past
        TABLE_RANGE it continues above the table's end), so softplus(raw) > threshold exactly when raw reaches
        the smallest activation whose softplus passes it (`_raw_thresholds`). raw is clamped to +-2^54 first, which
        moves no softplus across a threshold."""
        return _count_below(self._raw_thresholds, raw.clamp(-(2**54), 2**54), right=True)  # raw thresholds <= raw

    @functools.cached_property
    def _raw_thresholds(self) -> Tensor:
        """(C, 63) int64: for each threshold of `thresholds`, the smallest activation x in [-2^54, 2^54] with
        softplus(x) above it, by bisection (softplus(2^54) = 2^62 passes every threshold; the table's first entry
        serves every x below -TABLE_RANGE)."""
        low = torch.full_like(self.thresholds, -(2**54) - 1)  # softplus(low) <= threshold, or low below the range
        high = torch.full_like(self.thresholds, 2**54)  # softplus(high) > threshold
        while bool((high - low > 1).any()):
            middle = (low + high) >> 1
            above = softplus(middle) > self.thresholds
            high, low = torch.where(above, middle, high), torch.where(above, low, middle)
        return high

    def quantise(self, y: Tensor, mean: Tensor | None = None) -> Tensor:
        """Encoder side: the integers nearest (y - mean) / step (float64, unclamped), y physical (B, C, h, w), the
        mean int64 activations or None. Any rounding here is the encoder's choice; `dequantise` decides."""
        centred = y.double() if mean is None else y.double() - mean.double() / ONE
        return torch.round(centred * ONE / self._channel().double())

    def dequantise(self, symbols: Tensor, gained_offset: Tensor | None = None) -> Tensor:
        """(symbols + gained_offset) * step (B, C, h, w) as int64 activations, exact; `gained_offset`, int64
        activations (1, C, 1, 1) or None, is added in the gained domain (a factorised coder's medians)."""
        value = symbols.long() * self._channel()
        return value if gained_offset is None else value + round_shift(gained_offset * self._channel(), FRACTION_BITS)
