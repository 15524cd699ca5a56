"""Distortion and rate measures: PSNR, MS-SSIM, bits per frame / pixel, Bjøntegaard delta rate."""
from __future__ import annotations

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from scipy.interpolate import PchipInterpolator

MS_SSIM_LEVELS = 5  # pytorch-msssim's default weights: 5 scales, each halving the image


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of 8-bit frames (any shape, uint8), over all pixels and channels together."""
    mse = np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ms_ssim_window(height: int, width: int) -> int:
    """Largest odd Gaussian window <= 11 that pytorch-msssim accepts for this frame size (it needs
    the short side > (window - 1) * 2^4)."""
    window = 11
    while window > 3 and min(height, width) <= (window - 1) * 2 ** (MS_SSIM_LEVELS - 1):
        window -= 2
    return window


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Mean MS-SSIM of uint8 frames (N, H, W, 3), window from `ms_ssim_window`; NaN for frames whose short side
    is 32 px or less, too small for five scales with even the smallest window (e.g. the 32x32 bouncing balls)."""
    if min(reference.shape[1:3]) <= 2 * 2 ** (MS_SSIM_LEVELS - 1):
        return float("nan")
    x = torch.from_numpy(reference).permute(0, 3, 1, 2).double()
    y = torch.from_numpy(decoded).permute(0, 3, 1, 2).double()
    return float(_ms_ssim(x, y, data_range=255, win_size=ms_ssim_window(*reference.shape[1:3])))


def bd_rate(rate_anchor, psnr_anchor, rate_test, psnr_test) -> float:
    """Bjøntegaard delta rate in percent of `test` against `anchor` (negative: test needs fewer bits).

    Piecewise-cubic Hermite (PCHIP) interpolation of log-rate as a function of PSNR, integrated
    over the PSNR interval both curves cover, as in the JCT-VC sheet. NaN if they do not overlap or
    a curve has fewer than two distinct PSNRs.
    """
    def curve(rates, psnrs):
        order = np.argsort(psnrs)
        p, r = np.asarray(psnrs, float)[order], np.log(np.asarray(rates, float)[order])
        keep = np.concatenate([[True], np.diff(p) > 0])  # PCHIP needs strictly increasing PSNR
        return p[keep], PchipInterpolator(p[keep], r[keep])

    if min(len(set(psnr_anchor)), len(set(psnr_test))) < 2:
        return float("nan")  # a curve needs two distinct PSNRs
    p_anchor, log_rate_anchor = curve(rate_anchor, psnr_anchor)
    p_test, log_rate_test = curve(rate_test, psnr_test)
    low, high = max(p_anchor[0], p_test[0]), min(p_anchor[-1], p_test[-1])
    if not high > low:
        return float("nan")
    mean_difference = (log_rate_test.integrate(low, high) - log_rate_anchor.integrate(low, high)) / (high - low)
    return float((np.exp(mean_difference) - 1) * 100)
