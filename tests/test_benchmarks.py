"""The benchmark scripts in their smallest modes, on the tiny test model: they run and write the JSON they promise."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dsaecodec import zoo
from helpers import RECONSTRUCTION_DRIVEN, load_script

@pytest.fixture
def one_torch_thread():
    """Run with one torch thread: on a busy 2-core machine two threads make the MS-SSIM convolutions ~3x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_speed_and_overhead_quick_on_the_tiny_model(tiny_model, tmp_path):
    speed = load_script("speed")
    speed.main(["--models", tiny_model, "--quick", "--parts", "speed,overhead", "--frames", "4", "--repeats", "1",
                "--overhead-frames", "9", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "speed.json").read_text())

    assert result["models"] == [tiny_model] and result["memory"] == []
    assert result["machine"]["codec_threads"] == 1 and result["machine"]["torch_threads"] >= 1
    assert "perf_counter" in result["clock"] and result["x264"]["anchor"] == "x264-medium"

    assert [row["size"] for row in result["speed"]] == list(speed.SIZES)
    for row in result["speed"]:
        assert row["model"] == tiny_model and row["frames"] == 4 and row["learned"]["bytes"] > 0
        assert row["quality"] == 1  # the codec's default (2) is out of range for the 2-level tiny model
        for part in ("encode", "decode"):
            assert row["learned"][part]["fps_best"] >= row["learned"][part]["fps_median"] > 0
            assert len(row["learned"][part]["seconds"]) == 1
            for threads in ("default_threads", "one_thread"):
                ratio = row["learned"][part]["fps_best"] / row["x264"][threads][part]["fps_best"]
                assert row[f"{part}_ratio_vs_x264_{threads}"] == pytest.approx(ratio)

    assert [row["quality"] for row in result["overhead"]] == [0, 1]
    for row in result["overhead"]:
        assert row["frames"] == 9 and row["payloads"] == 4  # two segments, an f and a z payload each
        assert row["f_symbols"] > 0 and row["z_symbols"] > 0
        assert row["ideal_bits"] == pytest.approx(row["f_ideal_bits"] + row["z_ideal_bits"])
        assert row["file_bits"] > row["payload_bits"] == row["f_payload_bits"] + row["z_payload_bits"]
        # the range coder is close to the ideal under its own models: a few 32-bit words per payload at most;
        # shortened payloads can by luck end below it (runs of a random model's clamped lowest symbols are free)
        assert 0.95 * row["ideal_bits"] <= row["payload_bits"] <= row["ideal_bits"] + 96 * row["payloads"]
        float_ideal = row["f_float_bits"] + row["z_float_bits"]
        assert row["quantisation_gap_percent"] == pytest.approx(100 * (row["ideal_bits"] - float_ideal) / float_ideal)

    assert len(result["targets"]) == 2 and {row["status"] for row in result["targets"]} <= {"PASS", "MISS"}


def test_speed_jobs_part_on_the_tiny_model(tiny_model, tmp_path):
    """--jobs 1 against --jobs 2 at 640x360, in worker processes that must find a model registered at runtime."""
    speed = load_script("speed")
    speed.main(["--models", tiny_model, "--parts", "jobs", "--jobs", "2", "--frames", "10", "--repeats", "1",
                "--out", str(tmp_path)])
    result = json.loads((tmp_path / "speed.json").read_text())

    (row,) = result["jobs"]
    assert row["model"] == tiny_model and row["frames"] == 10 and row["jobs"] == 2 and row["size"] == "640x360"
    assert row["one_job"]["sha256"] == row["jobs_n"]["sha256"]
    for part in ("encode", "decode"):
        assert row[f"{part}_speedup"] == pytest.approx(row["jobs_n"][part]["fps_best"] / row["one_job"][part]["fps_best"])
    (target,) = result["targets"]
    assert target["status"] in {"PASS", "MISS"} and "--jobs 2" in target["target"]


def test_speed_device_part_against_itself_and_without_cuda(tiny_model, tmp_path, monkeypatch):
    """The device part with a CPU device standing in for a GPU ("cpu:0", so that the test sees it reach the codec):
    files cross both ways and agree; with the default (cuda) on a machine without one, the part is skipped."""
    speed = load_script("speed")
    devices = []
    loaded_model = speed.codec.loaded_model
    monkeypatch.setattr(speed.codec, "loaded_model",
                        lambda name, device="cpu": devices.append(device) or loaded_model(name, device))
    (row,) = speed.run_device([tiny_model], ["64x64"], 3, 1, None, "cpu:0", lambda line: None)
    assert "cpu:0" in devices and "cpu" in devices
    assert row["model"] == tiny_model and row["device"] == "cpu:0" and row["frames"] == 3 and row["same_bytes"]
    assert row["cpu_file_there"] == row["device_file_here"] == {"error": "", "max_pixel_difference": 0}
    (target,) = speed.targets([], [], [], [], [], [row], [tiny_model])
    assert target["target"] == speed.TARGETS["device"] and target["status"] == "PASS"
    broken = {**row, "device_file_here": {"error": "segment 0: entropy-coded payload is corrupted",
                                          "max_pixel_difference": None}}
    assert speed.targets([], [], [], [], [], [broken], [tiny_model])[0]["status"] == "MISS"
    far = {**row, "cpu_file_there": {"error": "", "max_pixel_difference": speed.CROSSING_PIXEL_LIMIT + 1}}
    assert speed.targets([], [], [], [], [], [far], [tiny_model])[0]["status"] == "MISS"

    monkeypatch.setattr(speed.torch.cuda, "is_available", lambda: False)
    result = speed.main(["--models", tiny_model, "--parts", "device", "--out", str(tmp_path)])
    assert result["device"] == [] and "device: PyTorch sees no CUDA device" in result["skipped"]
    speed.main(["--models", tiny_model, "--parts", "device", "--device", "cpu", "--sizes", "64x64", "--frames", "2",
                "--repeats", "1", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "speed.json").read_text())["targets"][0]["status"] == "PASS"


@pytest.mark.slow  # a dozen fresh processes: ~30 s on idle cores
def test_speed_commands_part_on_a_shipped_model(tmp_path):
    """Fresh `dsaecodec` processes (which know only the shipped models): models, info, encode and decode with one
    job and the default, on the model's frame size (32x32 for the balls models)."""
    speed = load_script("speed")
    speed.main(["--models", "dsae-balls", "--parts", "commands", "--repeats", "1", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "speed.json").read_text())

    *_, one, default = result["commands"]
    assert [row["command"] for row in result["commands"]] == ["models", "info", "encode/decode", "encode/decode"]
    assert (one["jobs"], default["jobs"]) == ("1", "default")
    assert all(len(row["encode_seconds"]) == len(row["decode_seconds"]) == 1 for row in (one, default))
    assert [row["target"] for row in result["targets"]] == [speed.TARGETS["answer"], speed.TARGETS["start"]]


def test_speed_memory_quick_on_the_tiny_model(tiny_model, tmp_path):
    """Peak RSS is measured in child processes, which must find a model registered at runtime (here tiny-test)."""
    speed = load_script("speed")
    speed.main(["--models", tiny_model, "--parts", "memory", "--rss-frames", "1,2", "--rss-segments", "1,3",
                "--out", str(tmp_path)])
    result = json.loads((tmp_path / "speed.json").read_text())

    assert result["speed"] == [] and result["overhead"] == []
    clip_length, segment_length = result["memory"]
    assert clip_length["model"] == tiny_model and [run["frames"] for run in clip_length["runs"]] == [1, 2]
    assert clip_length["compared"] == "clip length" and segment_length["compared"] == "segment length"
    for run in clip_length["runs"]:
        assert (run["width"], run["height"]) == (1280, 720) and run["bytes"] > 0 and run["segments"] == 1
        assert [frames for frames, _, _ in run["after_segment"]] == [run["frames"]]
    # 3 frames of the 640x480 centre, in segments of 1 and of 3
    assert [(run["frames"], run["segment_length"], run["segments"]) for run in segment_length["runs"]] == [
        (3, 1, 3), (3, 3, 1)]
    for run in clip_length["runs"] + segment_length["runs"]:
        assert run["peak_rss_mib"] >= run["baseline_rss_mib"] > 0 and run["encode_fps"] > 0
        assert run["after_segment"][-1][1] <= run["peak_rss_mib"] and run["ru_maxrss_mib"] > 0
        assert run["meter"] == ("VmHWM" if sys.platform == "linux" else "ru_maxrss")
    assert (segment_length["runs"][0]["width"], segment_length["runs"][0]["height"]) == (640, 480)
    assert math.isfinite(clip_length["peak_growth"]) and math.isfinite(segment_length["peak_growth"])
    assert [target["target"] for target in result["targets"]] == [speed.TARGETS["memory"],
                                                                   speed.TARGETS["memory_segments"]]
    assert all(target["status"] in ("PASS", "MISS") for target in result["targets"])


def test_speed_skips_a_model_without_weights(tmp_path, capsys):
    speed = load_script("speed")
    card = zoo.ModelCard(name="no-weights", family="dsae", domain="tests", weights=str(tmp_path / "missing.pt"),
                         sha256="0" * 64, training="none")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(zoo.MODELS, card.name, card)
        result = speed.main(["--models", card.name, "--parts", "overhead", "--quick", "--out", str(tmp_path)])
    assert result["models"] == [] and result["overhead"] == [] and result["targets"] == []
    assert result["skipped"][0].startswith("no-weights:") and "skipped: no-weights" in capsys.readouterr().out


def test_rate_distortion_smallest_mode(tiny_model, tmp_path, one_torch_thread):
    rate_distortion = load_script("rate_distortion")
    rate_distortion.main(["--quick", "--sets", "carphone", "--codecs", "dsae,x264-medium", "--model",
                          f"dsae={tiny_model}", "--qualities", "0,1", "--out", str(tmp_path), "--jobs", "1"])
    result = json.loads((tmp_path / "rate_distortion.json").read_text())

    assert list(result["sets"]) == ["carphone"] and result["skipped"] == []
    assert set(result["anchors"]) == {"x264-medium"}
    learned = [p for p in result["points"] if p["codec"] == "dsae"]
    anchor = [p for p in result["points"] if p["codec"] == "x264-medium"]
    assert [p["setting"] for p in learned] == ["q0", "q1"]
    assert len(anchor) == len(rate_distortion.ANCHORS["x264-medium"].crfs[::2])
    for point in learned + anchor:
        assert point["frames"] == 16 and (point["width"], point["height"]) == (176, 144)
        assert point["bytes"] > 0 and point["bpp"] == pytest.approx(8 * point["bytes"] / 16 / (176 * 144))
        assert 0 < point["psnr"] < 100 and 0 < point["ms_ssim"] <= 1
    for point in learned:
        assert 0 < point["f_bytes"] + point["z_bytes"] < point["bytes"]
    assert set(result["curves"]) == {"carphone/dsae", "carphone/x264-medium"}
    assert [(row["codec"], row["anchor"]) for row in result["bd_rate"]] == [("dsae", "x264-medium")]
    assert (tmp_path / "rate_distortion.csv").is_file() and (tmp_path / "rate_distortion.png").is_file()


def test_rate_distortion_gives_the_same_points_with_two_jobs(tmp_path, one_torch_thread):
    """The script as a user runs it, tasks in 2 spawned processes, against the same run in this process."""
    options = ["--quick", "--sets", "sprites,carphone", "--codecs", "dsae,x264-medium", "--qualities", "0"]
    load_script("rate_distortion").main(options + ["--jobs", "1", "--out", str(tmp_path / "one")])
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "rate_distortion.py"
    run = subprocess.run([sys.executable, str(script), *options, "--jobs", "2", "--out", str(tmp_path / "two")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr

    def points(folder: str) -> list[dict]:
        result = json.loads((tmp_path / folder / "rate_distortion.json").read_text())
        return [{key: value for key, value in point.items() if key != "seconds"} for point in result["points"]]

    one, two = points("one"), points("two")
    assert {(p["set"], p["codec"]) for p in one} == {(s, c) for s in ("sprites", "carphone")
                                                      for c in ("dsae", "x264-medium")}
    assert [p for p in two if p["codec"] == "dsae"] == [p for p in one if p["codec"] == "dsae"]
    # libx264, even on one thread, now and then codes a clip a few bytes differently in another process
    # (seen on ~1 in 40 fresh processes for one sprite clip at crf 22; cause not found): close, not equal
    anchors = [(a, b) for a, b in zip(one, two) if a["codec"] == "x264-medium"]
    assert len(anchors) == len([p for p in one if p["codec"] == "x264-medium"]) and len(one) == len(two)
    for a, b in anchors:
        assert (a["set"], a["clip"], a["setting"]) == (b["set"], b["clip"], b["setting"])
        # x264 itself is not bit-exact from process to process (README): seen 1.1% apart on one quick clip
        assert b["bytes"] == pytest.approx(a["bytes"], rel=0.03) and b["psnr"] == pytest.approx(a["psnr"], abs=0.1)


def test_rate_distortion_takes_a_weights_file(tiny_weights_file, tmp_path, one_torch_thread):
    weights = tiny_weights_file("my-run")
    rate_distortion = load_script("rate_distortion")
    rate_distortion.main(["--quick", "--sets", "sprites", "--codecs", "dsae", "--model", f"dsae={weights}",
                          "--qualities", "0", "--jobs", "1", "--segment-length", "4", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "rate_distortion.json").read_text())

    assert result["models"] == {"sprites/dsae": {"model": "my-run", "sha256": zoo.sha256_of(weights)}}
    assert result["segment_length"] == 4
    assert {p["codec"] for p in result["points"]} == {"dsae"} and result["skipped"] == []
    with pytest.raises(SystemExit):
        rate_distortion.main(["--sets", "sprites", "--segment-length", "0", "--out", str(tmp_path)])
    for bad in ("dsae=" + str(tmp_path / "missing.pt"), "nope=dsae-natural", "dsae="):
        with pytest.raises(SystemExit) as error:
            rate_distortion.main(["--sets", "sprites", "--codecs", "dsae", "--model", bad, "--out", str(tmp_path)])
        assert error.value.code == 2


def test_rate_distortion_compares_a_run_with_the_shipped_model(tiny_model, tiny_weights_file, tmp_path,
                                                               one_torch_thread):
    """--compare adds the run as its own curve next to the codec's model, with a BD-rate row against it."""
    rerun = tiny_weights_file("rerun")  # the same weights as the model it is compared with
    rate_distortion = load_script("rate_distortion")
    rate_distortion.main(["--quick", "--sets", "sprites", "--codecs", "dsae", "--model", f"dsae={tiny_model}",
                          "--compare", f"dsae={rerun}", "--qualities", "0,1", "--jobs", "1", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "rate_distortion.json").read_text())

    assert set(result["curves"]) == {"sprites/dsae", "sprites/dsae:rerun"}
    assert result["models"]["sprites/dsae:rerun"] == {"model": "rerun", "sha256": zoo.sha256_of(rerun)}
    assert [(row["codec"], row["anchor"]) for row in result["bd_rate"]] == [("dsae:rerun", "dsae")]

    def points(label: str) -> list[dict]:
        """The label's points, file sizes less the model name the header holds."""
        name = {"dsae": tiny_model, "dsae:rerun": "rerun"}[label]
        return [{k: v for k, v in p.items() if k not in ("codec", "seconds", "bits_per_frame", "bpp")}
                | {"bytes": p["bytes"] - len(name)} for p in result["points"] if p["codec"] == label]

    assert len(points("dsae")) == 2 * len(rate_distortion.SETS["sprites"].load(True))
    assert points("dsae:rerun") == points("dsae")
    for bad in ("dsae=" + str(tmp_path / "missing.pt"), "nope=" + str(rerun), f"dsae={tiny_model}",
                f"frame={rerun}"):  # missing file, unknown codec, not a weights file, wrong family
        with pytest.raises(SystemExit) as error:
            rate_distortion.main(["--sets", "sprites", "--codecs", "dsae", "--compare", bad, "--out", str(tmp_path)])
        assert error.value.code == 2


def test_rate_distortion_stops_at_a_failing_task_in_a_worker(tmp_path):
    rate_distortion = load_script("rate_distortion")
    broken = rate_distortion.Task("no-such-set", "x264-medium", None, None, None, True)
    with pytest.raises(KeyError, match="no-such-set"):
        rate_distortion.run_tasks([broken], jobs=2)
    for bad in (["--codecs", "frame", "--model", "frame=dsae-natural"], ["--qualities", "0,7"]):
        with pytest.raises(SystemExit) as error:  # checked before any task starts
            rate_distortion.main(["--sets", "carphone", "--codecs", "dsae", *bad, "--out", str(tmp_path)])
        assert error.value.code == 2


def test_speed_refuses_a_bad_weights_option(tmp_path):
    with pytest.raises(SystemExit) as error:
        load_script("speed").main(["--weights", f"mine={tmp_path / 'missing.pt'}", "--out", str(tmp_path)])
    assert error.value.code == 2


def test_learning_curves_plots_a_training_run(tmp_path, capsys):
    from dsaecodec import train

    train.main(["--out", str(tmp_path / "run.pt"), "--dataset", "balls", "--channels", "8", "--f-channels", "4",
                "--z-channels", "2", "--batch", "2", "--frames", "3", "--crop", "32", "--validation-clips", "1",
                "--threads", "1", "--lambdas", "0.001", "0.01", "--steps", "2", "--validate-every", "1"])
    curves = load_script("learning_curves")
    curves.main([str(tmp_path / "run.csv"), "--out", str(tmp_path / "curves.png")])
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert re.search(r"run.csv: step 2: q0 [0-9.]+ dB @ [0-9.]+ bpp, q1", capsys.readouterr().out)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit) as exit_info:
        curves.main([str(tmp_path / "bad.csv")])
    assert exit_info.value.code == 2


def test_gpu_script_trains_a_recipe_inside_its_budget_on_the_cpu(tmp_path):
    command = [sys.executable, "benchmarks/gpu_train.py", "--minutes", "0.5", "--probe-steps", "5", "--out",
               str(tmp_path), "--name", "run", "--", "--dataset", "balls", "--channels", "8", "--f-channels", "4",
               "--z-channels", "2", "--batch", "2", "--frames", "3", "--crop", "32", "--validation-clips", "1",
               "--threads", "1", "--lambdas", "0.001", "0.01", "--device", "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=400,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["steps"] == 1  # the budget is spent by the probes: one step, as the smallest run
    assert zoo.load_weights(tmp_path / "run.pt").qualities == 2
    assert (tmp_path / "run.csv").read_text().startswith("step,quality") and (tmp_path / "run.log").stat().st_size
    bad = subprocess.run([*command[:10], "--", "--steps=5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "leave --out, --steps" in bad.stderr


def test_gpu_script_fills_its_budget_with_steps():
    script = load_script("gpu_train")
    assert script.steps_within(script.FIXED_SECONDS + 100, 0.5) == 200
    assert script.steps_within(script.FIXED_SECONDS + 100.9, 0.5) == 201
    assert script.steps_within(10, 0.5) == 1  # nothing left: the smallest run
    log = "train: 100%|...\ntraining speed: 812.5 frames/s (394 ms per step of 8 clips x 8 frames, 37 steps after 3)\n"
    assert script.probe_pace("$ dsaecodec train ...\n" + log) == 0.394
    with pytest.raises(SystemExit):
        script.probe_pace("$ dsaecodec train ...\nTraceback ...\n")


def test_balls_benchmark_codes_every_length_and_judges_samples(tmp_path, one_torch_thread):
    """Tiny random models at 32x32: the length table has a row per T, and the plausibility judge scores the real
    test clips high and the random models' samples (grey noise, no balls that move) low."""
    from dsaecodec.models.dsae import DSAE, DSAEConfig
    from dsaecodec.models.frame import FrameConfig, FrameVAE
    from dsaecodec.models.rnn import RNNCodec, RNNConfig

    torch.manual_seed(0)
    lambdas = (0.001, 0.01)
    models = {"dsae": DSAE(DSAEConfig(channels=8, f_channels=4, z_channels=3, hidden_channels=5, lambdas=lambdas,
                                      frame_size=32)),
              "rnn": RNNCodec(RNNConfig(channels=8, latent_channels=4, hidden_channels=5, feature_channels=4,
                                        lambdas=lambdas, frame_size=32)),
              "frame": FrameVAE(FrameConfig(channels=8, latent_channels=4, lambdas=lambdas, frame_size=32))}
    options = []
    for family, model in models.items():
        model.eval().update_tables()
        zoo.save_weights(model, family, tmp_path / f"tiny-{family}-balls.pt")
        options += ["--model", f"{family}=" + str(tmp_path / f"tiny-{family}-balls.pt")]
    load_script("balls").main([*options, "--quick", "--lengths", "4,16", "--jobs", "1", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "balls.json").read_text())
    rows = result["lengths"]["rows"]
    assert [row["segment_length"] for row in rows] == [4, 16]
    assert all(set(row["bits_per_frame"]) == set(models) and "dsae_vs_rnn_bd_rate_percent" in row for row in rows)
    plausibility = result["plausibility"]
    assert plausibility["real"]["score"] > 0.5 and plausibility["real"]["motion"] == 1.0
    for family in models:
        assert plausibility[family]["sampled"]["score"] < 0.2
    assert (tmp_path / "balls_samples.png").stat().st_size > 1000


def test_the_plausibility_judge_rejects_what_breaks_the_physics():
    balls = load_script("balls")
    clips = [frames for _, frames, _ in load_script("rate_distortion").SETS["balls"].load(False)[:3]]
    real = balls.judged(clips)
    rng = np.random.default_rng(0)
    assert real["score"] > 0.7
    assert balls.judged([clip[rng.permutation(len(clip))] for clip in clips])["continuity"] < 0.2  # teleporting
    assert balls.judged([np.repeat(clip[:1], len(clip), 0) for clip in clips])["motion"] == 0  # frozen
    faded = [(clip * np.linspace(1, 0, len(clip))[:, None, None, None]).astype(np.uint8) for clip in clips]
    assert balls.judged(faded)["score"] < 0.2  # balls that shrink and vanish


def test_ceiling_codes_every_level_and_finer_steps(tiny_model, tiny_weights_file, capsys, one_torch_thread):
    weights = tiny_weights_file("tiny-run")
    ceiling = load_script("ceiling")
    ceiling.main(["--models", f"{tiny_model},{weights}", "--sets", "carphone", "--frames", "8", "--finer", "1,256"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{tiny_model} on carphone (8 frames)")
    numbers = [tuple(map(float, m)) for m in re.findall(r"([0-9]+) b/f ([0-9.]+) dB", lines[1])]
    assert len(numbers) == 4  # q0, q1, then q1 with steps 1x and 256x finer
    assert numbers[2] == numbers[1]  # 1x finer is the top level itself
    assert numbers[3][0] > 4 * numbers[1][0]  # finer steps cost bits
    model = zoo.load_weights(weights)
    before = {name: p.clone() for name, p in model.named_parameters()}
    ceiling.psnr_and_bits(model, torch.rand(1, 2, 3, 32, 32), 1, 16.0)
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())  # the gains are put back
    for bad in (["--frames", "12"], ["--sets", "sprites"], ["--fit-only", "z"]):
        with pytest.raises(SystemExit):
            ceiling.main(bad)


def test_ceiling_fits_latents_without_touching_the_weights(tiny_model, one_torch_thread):
    from dsaecodec.models.frame import FrameConfig, FrameVAE
    from dsaecodec.models.rnn import RNNCodec, RNNConfig

    ceiling = load_script("ceiling")
    torch.manual_seed(0)
    x = torch.rand(1, 2, 3, 32, 32)
    dsae, frame_vae = zoo.load_model(tiny_model)[0].eval(), FrameVAE(FrameConfig(channels=8, lambdas=(0.001, 0.01)))
    with torch.no_grad():  # targets each synthesis can draw exactly, from latents other than the encoder's
        features, f = dsae.analyse(x)
        y = frame_vae.g_a(x.flatten(0, 1))
        targets = [dsae.synthesise(3 * dsae.infer_z(features, f), 3 * f), frame_vae.g_s(3 * y).unflatten(0, (1, 2))]
    for model, target in zip((dsae, frame_vae), targets):
        before = {name: p.clone() for name, p in model.named_parameters()}
        start, fitted = (((ceiling.fit_latents(model, target, steps) - target) ** 2).mean() for steps in (0, 40))
        assert fitted < start / 4  # the fitted latents draw the target far better than the encoder's
        assert all(torch.equal(p, before[name]) and p.grad is None for name, p in model.named_parameters())
    assert 0 < ceiling.fitted_psnr(dsae, x, 2) < 60
    start, both, z_alone, f_alone = (
        ((ceiling.fit_latents(dsae, targets[0], steps, only=only) - targets[0]) ** 2).mean()
        for steps, only in ((0, None), (40, None), (40, "z"), (40, "f")))
    assert both < z_alone < start and both < f_alone < start  # one latent alone draws the target less well
    with pytest.raises(ValueError, match="no latent 'z'"):
        ceiling.fit_latents(frame_vae, x, 1, only="z")
    with pytest.raises(ValueError, match="only a DSAE"):
        ceiling.fit_latents(RNNCodec(RNNConfig(channels=8, latent_channels=4, hidden_channels=4, feature_channels=4)),
                            x, 1)


def test_integer_cost_measures_the_integer_paths_share_of_decoding():
    """The in-tree table of benchmarks/integer_cost.py: a shipped model's decode spends some, not all, of its time in
    the integer path (a fresh process, 2 carphone frames)."""
    integer_cost = load_script("integer_cost")
    rows = integer_cost.measure(integer_cost.ROOT, "dsae-natural", 2, 1, "0", integer_cost.SHARE)
    assert len(rows) == 1 and 0.01 < rows[0]["integer_share"] < 0.9


@pytest.mark.parametrize("model", ["dsae-natural", "frame-natural", "rnn-natural", "rnn-sprites",
                                   str(RECONSTRUCTION_DRIVEN)])
def test_integer_cost_times_the_integer_loop_against_a_float_one(model):
    """The same-tree table of benchmarks/integer_cost.py runs, for each family, spatial and vector, the codec's
    integer loop and a float one over the decode's segments: both take time, and for a model whose loop leaves the
    synthesis out, the loop is a part of the decode (a fresh process, 2 frames)."""
    integer_cost = load_script("integer_cost")
    (row,) = integer_cost.measure(integer_cost.ROOT, model, 2, 1, "1", integer_cost.FLOAT_LOOP)
    assert row["integer_loop_s"] > 0 and row["float_loop_s"] > 0
    if model != str(RECONSTRUCTION_DRIVEN):
        assert row["integer_loop_s"] < row["decode_cpu_s"]


def test_portability_reports_how_far_frames_are_from_the_default_decode():
    portability = load_script("portability")
    frames = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    assert portability.compare(frames, frames.copy()) == "same"
    other = frames.copy()
    other[0, 0, 0, 0], other[1, 0, 0, 1] = 2, 255  # an unsigned difference must not wrap around
    assert portability.compare(frames, other) == "latents same, frames <= 255 levels (2.083%)"
    with pytest.raises(ValueError, match="no clips"):
        portability.shipped_clips("dsae-unknown", quick=True)
