"""The training pipeline on tiny models: every dataset runs, resume is exact, torchrun keeps replicas identical."""
from __future__ import annotations

import csv
import hashlib
import itertools
import math
import os
import re
import shlex
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction

import pytest
import torch
from click.testing import CliRunner

from dsaecodec import train, zoo
from dsaecodec.cli import main
from dsaecodec.data.sprites import Partners
from dsaecodec.models.dsae import DSAE, DSAEConfig, widen
from dsaecodec.videoio import VideoWriter
from helpers import synthetic_clip

TINY = ["--channels", "8", "--f-channels", "4", "--z-channels", "2", "--batch", "2", "--frames", "3",
        "--crop", "32", "--validation-clips", "1", "--threads", "1", "--lambdas", "0.001", "0.01"]


def tiny_run(tmp_path, *extra: str) -> list[str]:
    return ["--out", str(tmp_path / "model.pt"), *TINY, *extra]


@pytest.fixture()
def clip_folder(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    with VideoWriter(folder / "a.mp4", 48, 40, Fraction(25)) as writer:
        for frame in synthetic_clip(12, 40, 48):
            writer.write(frame)
    return folder


@pytest.mark.parametrize("dataset", ["clips", "sprites", "balls"])
def test_twenty_steps_of_each_dataset(tmp_path, clip_folder, dataset, capsys):
    data = ["--data", str(clip_folder)] if dataset == "clips" else []
    train.main(tiny_run(tmp_path, "--dataset", dataset, "--steps", "20", "--validate-every", "10", *data))
    out = capsys.readouterr()
    assert re.search(r"step 20 q1: coded [0-9.]+ bpp \(estimate [0-9.]+\), PSNR [0-9.]+ dB", out.out + out.err)
    model = zoo.load_weights(tmp_path / "model.pt")
    assert model.qualities == 2 and model.f_entropy[0]._offset.numel() == 4  # tables built before saving


PAIRINGS = [["--paired-content"], ["--paired-motion"], ["--paired-content", "--paired-motion"]]


@pytest.mark.parametrize("flags", PAIRINGS)
def test_paired_training_runs(tmp_path, capsys, flags):
    train.main(tiny_run(tmp_path, "--dataset", "sprites", *flags, "--steps", "3", "--validate-every", "0"))
    out = capsys.readouterr()
    assert re.search(r"step 3 q1: coded [0-9.]+ bpp", out.out + out.err)


@pytest.mark.parametrize("flags", [[]] + PAIRINGS)
def test_forward_takes_f_from_the_content_partner_and_z_from_the_motion_partner(monkeypatch, flags):
    torch.manual_seed(0)
    model = DSAE(DSAEConfig(channels=8, f_channels=4, z_channels=2, hidden_channels=8, lambdas=(0.001, 0.01))).eval()
    model.f_log_gain.data.fill_(5.0)  # fine steps: an untrained f is small and would round to the same f_hat
    x, content, motion = Partners("test", frames=2, length=1, motion=True)[0].unsqueeze(1)
    partners = {"content": content if "--paired-content" in flags else None,
                "motion": motion if "--paired-motion" in flags else None}
    seen = {"quantised": []}  # which f were quantised, what the posterior of z and the decoder were given
    quantise_f, infer_z, synthesise = model._quantise_f, model.infer_z, model.synthesise
    monkeypatch.setattr(model, "_quantise_f", lambda f, quality: seen["quantised"].append(f) or quantise_f(f, quality))
    monkeypatch.setattr(model, "infer_z", lambda features, f_hat: seen.update(z_from=(features, f_hat)) or
                        infer_z(features, f_hat))
    monkeypatch.setattr(model, "synthesise", lambda z_hat, f_hat: seen.update(decoded_f=f_hat) or
                        synthesise(z_hat, f_hat))
    with torch.no_grad():
        model(x, 1, **partners)
        f_source = x if partners["content"] is None else content
        z_source = x if partners["motion"] is None else motion
        assert torch.equal(seen["quantised"][0], model.analyse(f_source)[1])
        assert torch.equal(seen["decoded_f"], quantise_f(model.analyse(f_source)[1], 1)[0])
        assert torch.equal(seen["z_from"][0], model.analyse(z_source)[0])
        # z is inferred given the decoded f, or, from a motion partner, given the partner's own f (as a swap's
        # z_1:T were inferred by the encoder of the clip they come from)
        z_given = seen["decoded_f"] if partners["motion"] is None else quantise_f(model.analyse(motion)[1], 1)[0]
        assert torch.equal(seen["z_from"][1], z_given)
        f_hats = [quantise_f(model.analyse(clip)[1], 1)[0] for clip in (x, content, motion)]
        for a, b in itertools.combinations(range(3), 2):  # the checks can tell the three clips apart
            assert not torch.equal(f_hats[a], f_hats[b])


def test_content_partners_are_those_the_shipped_paired_models_were_trained_on():
    digest = hashlib.sha256()
    items = Partners("train", frames=2, length=4, seed=0)
    for index in range(4):
        digest.update(items[index].numpy().tobytes())
    assert digest.hexdigest() == "c75efc0e6d74d085751b90065b885704535f19ec511e809560c56b42835367eb"


@pytest.mark.parametrize("flag", ["--paired-content", "--paired-motion"])
@pytest.mark.parametrize("options", [["--dataset", "balls"], ["--dataset", "sprites", "--no-f"],
                                     ["--dataset", "sprites", "--family", "frame"]])
def test_paired_training_only_for_a_dsae_with_f_on_sprites(tmp_path, flag, options):
    with pytest.raises(SystemExit, match=flag):
        train.main(tiny_run(tmp_path, flag, "--steps", "1", *options))


def test_swap_consistency_is_zero_only_for_a_model_whose_swaps_keep_their_latents(tmp_path, capsys):
    torch.manual_seed(0)
    model = DSAE(DSAEConfig(channels=8, f_channels=4, z_channels=2, hidden_channels=8, lambdas=(0.001, 0.01),
                            variant="factorised"))
    x = torch.rand(3, 2, 3, 32, 32)
    out = model(x, 1)
    z_term, f_term = model.swap_consistency(out["z_hat"], out["f_hat"])
    assert z_term.ndim == f_term.ndim == 0 and z_term.item() > 0 and f_term.item() > 0
    (z_term + f_term).backward()
    for name in ("g_a", "g_s", "content", "dynamics"):  # the decoder and the encoder are both trained by it
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, name).parameters()), name
    # re-analysing a swap that gave back exactly what it was made of costs nothing
    z_hat, f_hat = out["z_hat"].detach(), out["f_hat"].detach()
    swapped_f = f_hat.roll(1, dims=0)
    model.analyse = lambda frames: (None, swapped_f)
    model.infer_z = lambda features, f: z_hat
    assert [term.item() for term in model.swap_consistency(z_hat, f_hat)] == [0, 0]
    train.main(tiny_run(tmp_path, "--dataset", "sprites", "--variant", "factorised", "--swap-consistency", "0.1",
                        "--swap-f-weight", "0", "--motion-changes", "0.5", "--steps", "3", "--validate-every", "0"))
    assert re.search(r"step 3 q1: coded [0-9.]+ bpp", "".join(capsys.readouterr()))


@pytest.mark.parametrize("options", [["--no-f"], ["--family", "rnn"]])
def test_swap_consistency_only_for_a_dsae_with_f(tmp_path, options):
    with pytest.raises(SystemExit, match="--swap-consistency"):
        train.main(tiny_run(tmp_path, "--dataset", "sprites", "--swap-consistency", "0.1", "--steps", "1", *options))


@pytest.mark.parametrize("options", [("--motion-changes", "0.5", "--dataset", "balls"),
                                     ("--motion-changes", "0.5", "--dataset", "sprites", "--paired-content"),
                                     ("--motion-changes", "2", "--dataset", "sprites")])
def test_motion_changes_only_as_a_share_of_unpaired_sprites(tmp_path, options):
    with pytest.raises(SystemExit, match="--motion-changes"):
        train.main(tiny_run(tmp_path, "--steps", "1", *options))


@pytest.mark.parametrize("weights", [("--swap-consistency", "-0.1"), ("--swap-consistency", "0.1", "--swap-f-weight", "-1")])
def test_swap_consistency_weights_are_not_negative(tmp_path, weights):
    with pytest.raises(SystemExit, match="0 or more"):
        train.main(tiny_run(tmp_path, "--dataset", "sprites", "--variant", "factorised", "--steps", "1", *weights))


def test_init_starts_from_a_weights_file(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    common = ["--dataset", "balls", "--validate-every", "0"]
    train.main(tiny_run(first, *common, "--steps", "2"))
    train.main(tiny_run(second, *common, "--steps", "0", "--init", str(first / "model.pt")))
    a = torch.load(first / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(second / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SystemExit, match="other options"):
        train.main(tiny_run(second, *common, "--steps", "1", "--init", str(first / "model.pt"), "--f-channels", "5"))
    (tmp_path / "junk.pt").write_bytes(b"not weights")
    with pytest.raises(SystemExit, match="not a weights file"):
        train.main(tiny_run(second, *common, "--steps", "1", "--init", str(tmp_path / "junk.pt")))


@pytest.mark.parametrize("option, grown, smaller", [("--z-channels", 5, 3), ("--channels", 12, 8)])
def test_init_grows_a_trained_dsae(tmp_path, option, grown, smaller):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    common = ["--dataset", "balls", "--validate-every", "0"]
    train.main(tiny_run(first, *common, "--steps", "2"))
    train.main(tiny_run(second, *common, "--steps", "1", "--init", str(first / "model.pt"), option, str(grown)))
    assert getattr(zoo.load_weights(second / "model.pt").config, option[2:].replace("-", "_")) == grown
    with pytest.raises(SystemExit, match="other options"):  # it only grows
        train.main(tiny_run(second, *common, "--steps", "1", "--init", str(second / "model.pt"), option, str(smaller)))


@pytest.mark.parametrize("family, options", [("dsae", []), ("frame", []), ("rnn", []), ("dsae", ["--global-latents"])])
def test_init_moves_a_trained_model_to_other_quality_levels(tmp_path, family, options):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    common = ["--dataset", "balls", "--validate-every", "0", "--family", family, *options]
    train.main(tiny_run(first, *common, "--steps", "2"))  # lambdas 0.001, 0.01
    train.main(tiny_run(second, *common, "--steps", "0", "--init", str(first / "model.pt"),
                        "--lambdas", "0.001", "0.01", "0.04"))
    trained, moved = zoo.load_weights(first / "model.pt"), zoo.load_weights(second / "model.pt")
    assert moved.qualities == 3
    clip = synthetic_clip(3, 32, 32)
    x = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255
    for quality in (0, 1):  # the trained levels code as they did
        (a, a_hat), (b, b_hat) = trained.compress_segment(x, quality), moved.compress_segment(x, quality)
        assert a == b  # the same symbols; the pixels of the float synthesis within a level of the integer one's
    assert (a_hat.int() - b_hat.int()).abs().max() <= 1
    gains = [name for name, _ in moved.named_parameters() if name.endswith("_log_gain")]
    for name in gains:  # the new level: the nearest one's gains, a factor sqrt(4) = 2 finer
        grown, source = moved.get_parameter(name), trained.get_parameter(name)
        torch.testing.assert_close(grown[2], source[1] + 0.5 * math.log(4.0))
    assert gains and moved.compress_segment(x, 2)[0].dynamic != trained.compress_segment(x, 1)[0].dynamic
    with pytest.raises(SystemExit, match="other options"):  # lambdas and another option at once
        train.main(tiny_run(second, *common, "--steps", "1", "--init", str(first / "model.pt"),
                            "--lambdas", "0.001", "0.02", "--channels", "6"))


@pytest.mark.parametrize("options, grown, shrunk", [({}, {"z_channels": 6}, {"z_channels": 1}),
                                                     ({}, {"channels": 12}, {"channels": 6}),
                                                     ({"variant": "factorised"}, {"channels": 12}, {"channels": 6}),
                                                     ({"use_f": False}, {"channels": 12}, {"channels": 6}),
                                                     ({}, {"z_channels": 6, "channels": 12}, {"z_channels": 1})])
def test_a_grown_dsae_decodes_as_the_trained_one_until_it_trains(options, grown, shrunk):
    torch.manual_seed(0)
    config = DSAEConfig(channels=8, f_channels=4, z_channels=2, **options)
    trained, wider = DSAE(config), DSAE(replace(config, **grown))
    widen(trained, wider)
    trained.eval(), wider.eval()
    x = torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        before, after = trained(x, 1), wider(x, 1)
    torch.testing.assert_close(after["x_hat"], before["x_hat"])
    assert torch.equal(after["f_bits"], before["f_bits"])
    if "z_channels" in grown:  # new z written, not yet read by the old features
        assert wider.dynamics[2].weight[2:].abs().sum() > 0 and not wider.g_s[0].weight[:8, 2:6].any()
    if "channels" in grown:  # new features computed, not yet read
        assert wider.g_a[0].weight[8:].abs().sum() > 0 and not wider.g_a[2].weight[:8, 8:].any()
        assert not wider.g_s[7][0].weight[:, 8:].any()
    for other in (replace(config, **shrunk), replace(config, **grown, f_channels=5)):
        with pytest.raises(ValueError):
            widen(trained, DSAE(other))


def test_weights_record_their_run_and_cards_and_models_show_it(tmp_path):
    run = tiny_run(tmp_path, "--dataset", "balls", "--steps", "4", "--validate-every", "2", "--lr", "0.001")
    train.main([*run, "--stop-after", "2"])
    train.main([*run, "--resume"])
    record = zoo.training_record(tmp_path / "model.pt")
    assert record["recipe"]["lr"] == 0.001 and record["recipe"]["dataset"] == "balls" and "resume" not in record["recipe"]
    assert "seed" not in record["recipe"]  # defaults are left out
    command = shlex.split(record["command"])
    assert command[:2] == ["dsaecodec", "train"]
    assert vars(train.parse_arguments(command[2:])) == vars(train.parse_arguments(run))
    assert record["steps"] == 4 and "synthetic balls" in record["data"]
    assert [(stage["from"], stage["to"]) for stage in record["stages"]] == [(0, 2), (2, 4)]
    assert all(0 < stage["seconds"] < 600 for stage in record["stages"])
    with open(tmp_path / "model.csv") as curve:
        rows = list(csv.DictReader(curve))
    assert [(row["step"], row["quality"]) for row in record["history"]] == [(2, 0), (2, 1), (4, 0), (4, 1)]
    assert [row["psnr"] for row in record["history"]] == [float(row["psnr"]) for row in rows]

    card = zoo.write_card(tmp_path / "model.pt", domain="tests")
    assert card.training.startswith(record["data"]) and card.training.endswith(record["command"])
    result = CliRunner().invoke(main, ["models", str(tmp_path / "model.pt")])
    assert result.exit_code == 0, result.output
    assert "lr = 0.001" in result.output and "2 validation passes; at step 4" in result.output
    model = zoo.load_weights(tmp_path / "model.pt")  # read from the file: its card records neither
    assert f"qualities 0..{model.qualities - 1}\n" in result.output
    assert f"params    {sum(p.numel() for p in model.parameters()):,}\n" in result.output
    assert CliRunner().invoke(main, ["models", "no-such-model"]).exit_code == 2


@pytest.mark.parametrize("levers", [[], ["--data-workers", "1", "--bf16", "--channels-last"]])
def test_resume_continues_exactly(tmp_path, levers):
    straight, split = tmp_path / "straight", tmp_path / "split"
    straight.mkdir(), split.mkdir()
    common = ["--dataset", "balls", "--steps", "6", "--validate-every", "2", "--checkpoint-every", "2", *levers]
    train.main(tiny_run(straight, *common))
    train.main(tiny_run(split, *common, "--stop-after", "3"))
    assert torch.load(split / "model.pt.ckpt", weights_only=False)["step"] == 3
    assert zoo.load_weights(split / "model.pt").qualities == 2  # the stage's weights, tables built
    state = torch.load(split / "model.pt.ckpt", weights_only=False)
    del state["args"]["paired_motion"], state["stages"]  # checkpoints of older versions lack what was added since
    torch.save(state, split / "model.pt.ckpt")
    train.main(tiny_run(split, *common, "--resume"))
    stages = zoo.training_record(split / "model.pt")["stages"]
    assert stages[0] == {"from": 0, "to": 3, "seconds": None} and stages[1]["from"] == 3 and stages[1]["to"] == 6
    assert "unrecorded" in zoo.training_time(zoo.training_record(split / "model.pt"))
    a = torch.load(straight / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(split / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the learning curve of the interrupted run is the uninterrupted one's: steps 2, 4, 6, two qualities each
    curve = (straight / "model.csv").read_text()
    assert (split / "model.csv").read_text() == curve
    assert [line.split(",")[:2] for line in curve.splitlines()[1:]] == [[s, q] for s in "246" for q in "01"]


def test_data_workers_prepare_the_same_batches(tmp_path):
    """Batches made in a worker process are those made in the training process: the same weights at the end."""
    runs = [tmp_path / "inline", tmp_path / "worker"]
    for run, workers in zip(runs, ("0", "2")):
        run.mkdir()
        train.main(tiny_run(run, "--dataset", "balls", "--steps", "5", "--validate-every", "0",
                            "--data-workers", workers))
    a, b = (torch.load(run / "model.pt", weights_only=True)["state_dict"] for run in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_and_channels_last_train_and_report_their_speed(tmp_path, capsys):
    """The speed levers train a model that codes (weights saved in the usual layout), and the run reports its
    steady-state speed; bf16 changes the numerics, so its weights differ from a float32 run's."""
    train.main(tiny_run(tmp_path, "--dataset", "balls", "--steps", "6", "--validate-every", "0"))
    plain = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    train.main(tiny_run(tmp_path, "--dataset", "balls", "--steps", "6", "--validate-every", "0", "--bf16",
                        "--channels-last"))
    out = capsys.readouterr().out
    assert re.search(r"training speed: [0-9.]+ frames/s \([0-9]+ ms per step of 2 clips x 3 frames, 3 steps", out)
    model = zoo.load_weights(tmp_path / "model.pt")
    state = model.state_dict()
    assert all(t.is_contiguous() for t in state.values())
    assert any(not torch.equal(plain[k], state[k]) for k in plain)
    assert all(v.dtype == plain[k].dtype for k, v in state.items() if k in plain)


def test_a_step_validated_again_is_not_appended_twice(tmp_path):
    rows = [{"quality": q, "coded_bpp": 0.1, "estimated_bpp": 0.1, "psnr": 20.0} for q in range(2)]
    train.append_curve(tmp_path / "c.csv", 10, rows)
    train.append_curve(tmp_path / "c.csv", 10, rows)  # e.g. resumed from a checkpoint before that pass
    train.append_curve(tmp_path / "c.csv", 20, rows)
    assert [line.split(",")[0] for line in (tmp_path / "c.csv").read_text().splitlines()] == \
        ["step", "10", "10", "20", "20"]


def test_a_fresh_run_starts_a_fresh_learning_curve(tmp_path):
    common = ["--dataset", "balls", "--steps", "2", "--validate-every", "1"]
    train.main(tiny_run(tmp_path, *common))
    train.main(tiny_run(tmp_path, *common))
    assert len((tmp_path / "model.csv").read_text().splitlines()) == 1 + 2 * 2


def test_out_may_name_a_folder_that_does_not_exist_yet(tmp_path):
    train.main(["--out", str(tmp_path / "runs" / "a" / "model.pt"), *TINY, "--dataset", "balls", "--steps", "1",
                "--validate-every", "0"])
    assert (tmp_path / "runs" / "a" / "model.pt").is_file() and (tmp_path / "runs" / "a" / "model.pt.ckpt").is_file()


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in train.argument_parser()._actions:
        assert action.help and all(option in text for option in action.option_strings)


def test_torchrun_two_processes_end_identical(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               "-m", "dsaecodec.train", *tiny_run(tmp_path, "--dataset", "balls", "--steps", "4", "--batch", "4",
                                                  "--validate-every", "0")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "weights identical on all 2 processes" in result.stdout
    assert (tmp_path / "model.pt").is_file()


@pytest.mark.parametrize("options", [[], ["--global-latents"]])
def test_init_moves_a_trained_rnn_to_a_state_read_from_its_latents(tmp_path, options):
    """`--state-from latents --init` of an RNN trained on its reconstructions: every tensor but the encoder of the
    past is kept, and that encoder reads zero at first (each step's state driven as the first frame's)."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    common = ["--dataset", "balls", "--validate-every", "0", "--family", "rnn", *options]
    train.main(tiny_run(first, *common, "--steps", "2"))
    train.main(tiny_run(second, *common, "--steps", "0", "--init", str(first / "model.pt"), "--state-from", "latents"))
    trained, moved = zoo.load_weights(first / "model.pt"), zoo.load_weights(second / "model.pt")
    assert (trained.config.state_from, moved.config.state_from) == ("reconstructions", "latents")
    kept = {name: tensor for name, tensor in trained.state_dict().items() if not name.startswith("past.")}
    assert all(torch.equal(moved.state_dict()[name], tensor) for name, tensor in kept.items())
    with torch.no_grad():  # the moved model's past reads zero: it codes as the trained one would with a zero input
        for tensor in trained.past[-1].parameters():
            tensor.zero_()
    clip = torch.from_numpy(synthetic_clip(3, 32, 32)).permute(0, 3, 1, 2)
    (a, a_hat), (b, b_hat) = trained.compress_segment(clip, 1), moved.compress_segment(clip, 1)
    assert a == b  # the same symbols; the pixels of the float synthesis within a level of the integer one's
    assert (a_hat.int() - b_hat.int()).abs().max() <= 1
    with pytest.raises(SystemExit, match="other options"):  # and not back
        train.main(tiny_run(first, *common, "--steps", "1", "--init", str(second / "model.pt")))


def test_distillation_teaches_the_new_encoder_of_the_past_what_the_old_one_computed(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    common = ["--dataset", "balls", "--validate-every", "0", "--family", "rnn"]
    train.main(tiny_run(first, *common, "--steps", "2"))
    train.main(tiny_run(second, *common, "--steps", "0", "--init", str(first / "model.pt"), "--state-from", "latents",
                        "--distil-steps", "30"))
    before, after = map(float, re.search(r"mean squared error (\S+) -> (\S+)", capsys.readouterr().out).groups())
    assert after < 0.5 * before


@pytest.mark.parametrize("options", [["--distil-steps", "-1", "--state-from", "latents", "--init", "x.pt"],
                                     ["--distil-steps", "3", "--state-from", "latents"],
                                     ["--distil-steps", "3", "--init", "x.pt"]])
def test_distillation_needs_an_rnn_moved_to_its_latents(tmp_path, options):
    with pytest.raises(SystemExit, match="--distil-steps"):
        train.main(tiny_run(tmp_path, "--dataset", "balls", "--family", "rnn", "--steps", "1", *options))
