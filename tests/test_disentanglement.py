"""benchmarks/disentanglement.py in its smallest mode on the tiny test model: it runs, and writes the JSON and the
picture grid it promises. (The tiny model is untrained and the judge barely trained: the numbers mean nothing.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from dsaecodec import zoo
from dsaecodec.data.sprites import DIRECTIONS
from helpers import load_script


def test_disentanglement_smallest_run_on_the_tiny_model(tiny_weights_file, tmp_path):
    weights = tiny_weights_file("tiny-run")  # given as a weights file, as after a training run
    script = load_script("disentanglement")
    threads = torch.get_num_threads()
    try:
        script.main(["--model", str(weights), "--judge-steps", "3", "--judge-identities", "4", "--judge-views", "1",
                     "--judge-batch", "4", "--pairs", "2", "--samples", "2", "--grid", "2", "--threads", "1",
                     "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "disentanglement.json").read_text())

    assert result["model"] == "tiny-run" and result["weights_sha256"] == zoo.sha256_of(weights)
    assert result["quality"] == 1  # the tiny model's highest of 2 levels
    assert result["judge"]["steps"] == 3 and result["judge"]["clips"] == 4
    attributes = ("body", "hair", "top", "bottom", "mean", "all_four")
    for part in ("originals", "decodes"):
        scores = result["judge"][part]
        assert set(scores["attributes"]) == set(attributes)
        assert all(0 <= v <= 1 for v in [*scores["attributes"].values(), scores["action_direction"], scores["action"]])
    swap = result["swap"]
    assert swap["pairs"] == 2 and len(swap["records"]) == 2
    for key in ("attributes_match_content", "attributes_match_motion"):
        assert set(swap[key]) == set(attributes) and all(0 <= v <= 1 for v in swap[key].values())
    for key in ("action_direction_match_motion", "action_direction_match_content", "action_match_motion",
                "direction_match_motion", "direction_match_content", "same_direction"):
        assert 0 <= swap[key] <= 1
    # the judged direction, as the records name it, is what was scored
    assert swap["direction_match_motion"] == np.mean([DIRECTIONS.index(r["judged"]["action_direction"].split("-")[1])
                                                      == r["motion"]["direction"] for r in swap["records"]])
    assert swap["same_direction"] == np.mean([r["content"]["direction"] == r["motion"]["direction"]
                                              for r in swap["records"]])
    for record in swap["records"]:  # the pairs differ in every attribute and in the action
        a, b = record["content"], record["motion"]
        assert a["action"] != b["action"]
        assert all(x != y for x, y in zip(np.unravel_index(a["identity"], (6,) * 4),
                                          np.unravel_index(b["identity"], (6,) * 4)))

    fixed = result["fixed_content"]
    assert fixed["samples"] == 2 and sum(fixed["action_direction_histogram"].values()) == 2
    assert all(0 <= v <= 1 for v in fixed["attributes_match_content"].values())
    assert 0 <= fixed["action_direction_entropy_bits"] <= np.log2(9) + 1e-9
    assert 0 <= result["fixed_motion"]["action_direction_match_motion"] <= 1

    target = result["target"]
    assert target["threshold"] == 0.9 and isinstance(target["pass"], bool)
    assert target["attribute_accuracy"] == swap["attributes_match_content"]["mean"]
    assert target["action_accuracy"] == swap["action_direction_match_motion"]

    grid = Path(result["grid"]["path"])
    assert grid == tmp_path / "disentanglement_grid.png" and grid.stat().st_size > 1000
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(result["grid"]["rows"]) == 2 and len(result["grid"]["columns"]) == len(script.GRID_MOTIONS)


def test_the_judge_trains_to_the_same_weights_every_time():
    script = load_script("disentanglement")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the script's default
        first, _ = script.train_judge(3, 4, 1, 4, seed=0, log=lambda *a: None)
        second, _ = script.train_judge(3, 4, 1, 4, seed=0, log=lambda *a: None)
    finally:
        torch.set_num_threads(threads)
    a, b = first.state_dict(), second.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
