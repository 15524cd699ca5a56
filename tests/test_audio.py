"""Sound (issue 19, item 3): the input's first audio stream travels in the .dsae file and comes back in sync."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from bitstream.format import BitstreamReader
from dsaecodec import audio
from helpers import synthetic_clip
from test_bitstream import Layout, rewrite_index
from test_cli import assert_one_line_error, no_leftovers, run

FPS = 25
FRAMES = 10  # 0.4 s


def make_clip(path: Path, codec: str = "aac", fmt: str | None = None, rate: int = 48000, layout: str = "stereo",
              seconds: float = FRAMES / FPS) -> None:
    """A 64x48 H.264 clip of FRAMES frames at FPS with a 440 Hz tone of `seconds` in `codec`."""
    with av.open(str(path), "w", format=fmt) as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = container.add_stream(codec, rate=rate)
        sound.layout = layout
        if codec == "vorbis":
            sound.codec_context.options = {"strict": "-2"}  # FFmpeg's own Vorbis encoder is "experimental"
        for i, frame in enumerate(synthetic_clip(FRAMES, 48, 64)):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = i
            container.mux(video.encode(picture))
        samples = int(rate * seconds)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate)).astype(np.float32)
        size, channels = sound.codec_context.frame_size or 1024, 1 if layout == "mono" else 2
        for start in range(0, samples, size):
            chunk = np.repeat(tone[None, start:start + size], channels, axis=0)
            if sound.format.name == "s16":
                chunk = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)
            piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=sound.format.name, layout=layout)
            piece.sample_rate, piece.pts = rate, start
            container.mux(sound.encode(piece))
        container.mux(video.encode(None))
        container.mux(sound.encode(None))


def streams(path: Path) -> dict[str, tuple[str, float]]:
    """{kind: (codec, duration in seconds)} of a file's streams (mp4: each stream's own duration)."""
    with av.open(str(path)) as container:
        return {s.type: (s.codec_context.name, float(s.duration * s.time_base) if s.duration else
                         container.duration / av.time_base) for s in container.streams}


@pytest.fixture()
def sound_mp4(tmp_path) -> Path:
    path = tmp_path / "tone.mp4"
    make_clip(path)
    return path


@pytest.fixture()
def sound_dsae(tiny_model, sound_mp4) -> Path:
    result = run("encode", sound_mp4, "--model", tiny_model, "--quality", 1, "--segment-length", 4, "-j", 1)
    assert result.exit_code == 0, result.output
    assert "sound" in result.output and "aac, 48000 Hz, 2 channels, 0.400 s" in result.output
    return sound_mp4.with_suffix(".dsae")


def test_a_clip_with_sound_decodes_to_an_mp4_with_its_sound(sound_mp4, sound_dsae):
    out = sound_dsae.with_name("out.mp4")
    result = run("decode", sound_dsae, "-o", out, "-j", 1)
    assert result.exit_code == 0 and "with sound" in result.output
    before, after = streams(sound_mp4), streams(out)
    assert after["audio"][0] == "aac"  # copied
    assert abs(after["audio"][1] - before["audio"][1]) < 0.1  # the bar; it is exact here
    assert after["audio"][1] == pytest.approx(before["audio"][1], abs=1e-3)
    assert abs(after["video"][1] - after["audio"][1]) < 0.05


def test_mkv_and_a_range_of_segments_keep_the_sound_in_step(sound_dsae):
    mkv = sound_dsae.with_name("out.mkv")
    assert run("decode", sound_dsae, "-o", mkv, "-j", 1).exit_code == 0
    assert abs(streams(mkv)["audio"][1] - 0.4) < 0.1
    part = sound_dsae.with_name("part.mp4")  # segment 1: frames 4 to 7, 0.16 s to 0.32 s
    assert run("decode", sound_dsae, "-o", part, "--segments", "1:2", "-j", 1).exit_code == 0
    assert streams(part)["audio"][1] == pytest.approx(0.16, abs=0.03)


def test_no_audio_on_encode_and_on_decode(tiny_model, sound_mp4, sound_dsae):
    silent = sound_dsae.with_name("silent.dsae")
    result = run("encode", sound_mp4, "-o", silent, "--model", tiny_model, "--quality", 1, "--segment-length", 4,
                 "--no-audio", "-j", 1)
    assert result.exit_code == 0 and "sound" not in result.output
    assert BitstreamReader(silent.read_bytes()).audio_size == 0
    # the segments are the same bytes: only the audio record and its size differ
    layout, silent_layout = Layout.parse(sound_dsae.read_bytes()), Layout.parse(silent.read_bytes())
    assert layout.payloads == silent_layout.payloads and silent_layout.audio == b""
    assert run("info", silent).output.count("audio       none") == 1
    for source, options in ((silent, ()), (sound_dsae, ("--no-audio",))):
        out = source.with_name(f"{source.stem}-no-audio.mp4")
        result = run("decode", source, "-o", out, *options, "-j", 1)
        assert result.exit_code == 0 and "with sound" not in result.output
        assert set(streams(out)) == {"video"}


def test_y4m_and_png_outputs_say_the_sound_was_not_written(sound_dsae):
    for name in ("out.y4m", "frames"):
        result = run("decode", sound_dsae, "-o", sound_dsae.with_name(name), "-j", 1)
        assert result.exit_code == 0
        notes = result.stderr.strip().splitlines()
        assert len(notes) == 1 and notes[0].startswith("dsaecodec: note: ") and "was not written" in notes[0]


def test_info_shows_the_sound(sound_dsae):
    result = run("info", sound_dsae)
    assert result.exit_code == 0
    size = BitstreamReader(sound_dsae.read_bytes()).audio_size
    assert f"audio       aac, 48000 Hz, 2 channels, 0.400 s, {size} bytes" in result.output
    assert "+ audio " in result.output


def test_verify_checks_the_sound(sound_dsae):
    result = run("decode", sound_dsae, "--verify", "-j", 1)
    assert result.exit_code == 0 and "audio: ok" in result.output


def corrupt_audio(path: Path, **fields) -> None:
    """Damage the sound of a .dsae file in place: a byte of it flipped (CRC left), or layout fields replaced."""
    data = path.read_bytes()
    if fields:
        path.write_bytes(rewrite_index(data, **fields))
        return
    layout = Layout.parse(data)
    at = len(data) - 8 - int.from_bytes(data[-8:-4], "little") - 4 - len(layout.audio) // 2
    path.write_bytes(data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1:])


@pytest.mark.parametrize("damage", ["crc", "not-mp4"])
def test_a_damaged_sound_is_one_line_exit_2_and_no_output(sound_dsae, damage):
    if damage == "crc":
        corrupt_audio(sound_dsae)
        message = "audio record is corrupted (CRC mismatch)"
    else:  # a valid CRC over bytes FFmpeg cannot read
        corrupt_audio(sound_dsae, audio=b"this is not an mp4 file" * 4)
        message = "the sound in the file cannot be read"
    before = {p.name for p in sound_dsae.parent.iterdir()}
    out = sound_dsae.with_name("out.mp4")
    assert_one_line_error(run("decode", sound_dsae, "-o", out, "-j", 1), message, "--no-audio")
    assert no_leftovers(sound_dsae.parent, before)
    result = run("decode", sound_dsae, "--verify", "-j", 1)
    assert result.exit_code == 2 and f"audio: {message}" in result.output
    assert "unreadable" in run("info", sound_dsae).output  # info still describes the video
    assert run("decode", sound_dsae, "-o", out, "--no-audio", "-j", 1).exit_code == 0  # the video is intact


def test_a_codec_mp4_cannot_carry_is_re_encoded_to_opus(tmp_path, tiny_model):
    clip = tmp_path / "vorbis.mkv"  # Vorbis, as in .webm and .ogv files
    make_clip(clip, "vorbis", "matroska")
    assert streams(clip)["audio"][0] == "vorbis"
    blob = audio.extract(clip)
    info = audio.describe(blob)
    assert (info.codec, info.sample_rate, info.channels) == ("opus", 48000, 2)
    assert info.duration == pytest.approx(0.4, abs=0.03)
    assert run("encode", clip, "--model", tiny_model, "--quality", 0, "-j", 1).exit_code == 0
    out = tmp_path / "out.mp4"
    assert run("decode", clip.with_suffix(".dsae"), "-o", out, "-j", 1).exit_code == 0
    assert streams(out)["audio"][0] == "opus" and abs(streams(out)["audio"][1] - 0.4) < 0.1


def test_pcm_is_copied_but_re_encoded_to_aac_for_mp4(tmp_path):
    clip = tmp_path / "pcm.mov"  # uncompressed sound, as cameras and editors write it
    make_clip(clip, "pcm_s16le", "mov", rate=44100, layout="mono")
    blob = audio.extract(clip)
    assert audio.describe(blob).codec == "pcm_s16le"
    for name, codec in (("out.mp4", "aac"), ("out.mkv", "pcm_s16le")):
        from dsaecodec.videoio import VideoWriter

        with VideoWriter(tmp_path / name, 64, 48, Fraction(FPS), audio=blob) as writer:
            for frame in synthetic_clip(FRAMES, 48, 64):
                writer.write(frame)
        kind, duration = streams(tmp_path / name)["audio"]
        assert kind == codec and abs(duration - 0.4) < 0.1


def test_sound_is_kept_from_the_first_video_frame_on(tmp_path):
    clip = tmp_path / "tone.mp4"
    make_clip(clip, seconds=1.0)  # the sound outlasts the 0.4 s of pictures: kept whole, as in the input
    assert audio.describe(audio.extract(clip)).duration == pytest.approx(1.0, abs=0.03)
    late = audio.describe(audio.extract(clip, start=Fraction(1, 2)))  # a clip whose first frame is at 0.5 s
    assert late.duration == pytest.approx(0.5, abs=0.03)
    assert audio.extract(clip, start=5) is None  # no sound after the first frame
    silent = tmp_path / "silent.mp4"
    from dsaecodec.videoio import VideoWriter

    with VideoWriter(silent, 16, 16, Fraction(FPS)) as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
    assert audio.extract(silent) is None


def test_writer_refuses_sound_for_y4m(tmp_path):
    from dsaecodec.videoio import VideoWriter

    with pytest.raises(ValueError, match="only .mp4 and .mkv outputs carry sound"):
        VideoWriter(tmp_path / "a.y4m", 16, 16, Fraction(FPS), audio=b"x")
    assert not list(tmp_path.iterdir())


def test_jobs_write_the_same_bytes_with_sound(tiny_model, sound_mp4, tmp_path):
    outputs = []
    for jobs in (1, 2):
        out = tmp_path / f"j{jobs}.dsae"
        assert run("encode", sound_mp4, "-o", out, "--model", tiny_model, "--quality", 1, "--segment-length", 2,
                   "-j", jobs).exit_code == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] and BitstreamReader(outputs[0]).audio_size > 0


def test_swap_keeps_the_motion_files_sound(tiny_model, sound_dsae, tmp_path):
    silent = tmp_path / "silent.dsae"
    assert run("encode", sound_dsae.with_suffix(".mp4"), "-o", silent, "--model", tiny_model, "--quality", 1,
               "--segment-length", 4, "--no-audio", "-j", 1).exit_code == 0
    for content, motion, has_sound in ((silent, sound_dsae, True), (sound_dsae, silent, False)):
        out = tmp_path / f"swap-{has_sound}.dsae"
        assert run("swap", content, motion, "-o", out).exit_code == 0
        assert (BitstreamReader(out.read_bytes()).read_audio() is not None) == has_sound
