"""PSNR, MS-SSIM window choice and BD-rate on cases with known answers."""
import numpy as np
import pytest

from dsaecodec.metrics import bd_rate, ms_ssim, ms_ssim_window, psnr


def test_psnr_known_values():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    assert psnr(a, a) == float("inf")
    b = a.copy()
    b[...] = 1  # mse 1 -> 10 log10(255^2)
    assert psnr(a, b) == pytest.approx(48.1308, abs=1e-4)


def test_ms_ssim_window_fits_small_frames():
    assert ms_ssim_window(720, 1280) == 11
    assert ms_ssim_window(144, 176) == 9
    assert ms_ssim_window(64, 64) == 3
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert ms_ssim(clip, clip) == pytest.approx(1.0)
    noisy = np.clip(clip + rng.normal(0, 20, clip.shape), 0, 255).astype(np.uint8)
    assert ms_ssim(clip, noisy) < 0.99


def test_bd_rate_of_scaled_curve():
    rate = np.array([100.0, 200.0, 400.0, 800.0])
    quality = np.array([30.0, 33.0, 36.0, 39.0])
    assert bd_rate(rate, quality, rate, quality) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(rate, quality, 0.9 * rate, quality) == pytest.approx(-10.0, abs=1e-6)
    assert bd_rate(rate, quality, 2 * rate, quality) == pytest.approx(100.0, abs=1e-6)
    # a test curve 1 dB better everywhere on a 3 dB-per-doubling slope costs 2^(-1/3) - 1 of the rate
    assert bd_rate(rate, quality, rate, quality + 1) == pytest.approx((2 ** (-1 / 3) - 1) * 100, abs=0.5)
    assert np.isnan(bd_rate(rate, quality, rate, quality + 20))
    assert np.isnan(bd_rate(rate, quality, rate, np.full(4, 33.0)))  # a flat curve has no BD-rate


def test_ms_ssim_is_nan_for_frames_too_small_for_five_scales():
    clip = np.zeros((2, 32, 48, 3), np.uint8)
    assert np.isnan(ms_ssim(clip, clip))
