"""Media I/O: synthetic videos/images written here, plus the real assets in ../shared/assets."""

from __future__ import annotations

import io
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamactor_jax import media

ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"
needs_assets = pytest.mark.skipif(not ASSETS.is_dir(), reason=f"real test assets not found at {ASSETS}")

try:
    import decord  # noqa: F401

    HAVE_DECORD = True
except ImportError:
    HAVE_DECORD = False
READ_BACKENDS = [b for b in media.BACKENDS if b != "decord" or HAVE_DECORD]


# ----------------------------------------------------------------------------------- helpers
def level(i: int) -> int:
    return 4 + 8 * i  # a flat grey level per frame survives H.264 (tested error < 4)


def coded_video(n: int, h: int = 32, w: int = 64) -> np.ndarray:
    """Frame i is flat grey `level(i)`: the frame index can be read back after lossy coding."""
    return np.stack([np.full((h, w, 3), level(i), np.uint8) for i in range(n)])


def decode_levels(frames: np.ndarray) -> np.ndarray:
    return np.rint((frames.reshape(len(frames), -1).mean(1) - 4) / 8).astype(int)


def smooth_video(rng, n: int, h: int, w: int) -> np.ndarray:
    """Random low-frequency content (random 3x4 grids upsampled): what a codec keeps well."""
    small = (rng.random((n, 3, 4, 3)) * 255).astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BICUBIC)) for f in small])


@pytest.fixture(scope="module")
def coded_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("vid") / "coded.mp4"
    media.write_video(p, coded_video(30), fps=24)
    return p


# ------------------------------------------------------------------------------- sampling
def brute_nearest(num_src, src_fps, fps, start, count):
    """Nearest source frame to each target timestamp, ties to the later one (slow and obvious)."""
    out = []
    for k in range(count):
        t = Fraction(k) / Fraction(fps)
        cands = [i for i in range(start, num_src)]
        d = [abs(Fraction(i - start) / Fraction(src_fps) - t) for i in cands]
        best = min(d)
        if t > Fraction(num_src - 1 - start) / Fraction(src_fps) + Fraction(1, 2) / Fraction(src_fps):
            break
        out.append(max(i for i, di in zip(cands, d) if di == best))
    return out


@pytest.mark.parametrize(
    "src_fps,fps,start",
    [(30, 8, 0), (24, 10, 3), (24, 16, 0), (8, 30, 0), (Fraction(30000, 1001), 25, 5), (30, 30, 2)],
)
def test_sample_indices_nearest_frame(src_fps, fps, start):
    got = media.sample_indices(40, src_fps, fps=fps, start=start)
    assert got == brute_nearest(40, src_fps, fps, start, 200)
    assert media.sample_indices(40, src_fps, fps=fps, start=start, num_frames=5) == got[:5]


def test_sample_indices_stride_and_errors():
    assert media.sample_indices(10, 30, start=1, stride=3) == [1, 4, 7]
    with pytest.raises(ValueError, match="fps or stride"):
        media.sample_indices(10, 30, fps=10, stride=2)
    with pytest.raises(ValueError, match="stride"):
        media.sample_indices(10, 30, stride=0)
    with pytest.raises(ValueError, match="num_frames"):
        media.sample_indices(10, 30, num_frames=0)
    with pytest.raises(ValueError, match="fps"):
        media.sample_indices(10, 30, fps=-1)


# ---------------------------------------------------------------------- video round trips
@pytest.mark.parametrize("backend", READ_BACKENDS)
def test_coded_video_every_backend(coded_path, backend):
    info = media.video_info(coded_path, backend=backend)
    assert (info.height, info.width, info.fps, info.backend) == (32, 64, 24.0, backend)
    v = media.read_video(coded_path, backend=backend)
    assert v.shape == (30, 32, 64, 3) and v.dtype == np.uint8
    assert np.abs(v.astype(int) - coded_video(30)).max() < 4
    np.testing.assert_array_equal(decode_levels(v), np.arange(30))


@pytest.mark.parametrize("backend", READ_BACKENDS)
@pytest.mark.parametrize("fps,start,num", [(10, 0, None), (30, 0, 12), (7.5, 4, 6), (24, 29, None)])
def test_fps_sampling_exact(coded_path, backend, fps, start, num):
    v = media.read_video(coded_path, fps=fps, start=start, num_frames=num, backend=backend)
    expected = media.sample_indices(30, 24, fps=fps, start=start, num_frames=num)
    np.testing.assert_array_equal(decode_levels(v), expected)


def test_stride_and_start(coded_path):
    v = media.read_video(coded_path, start=2, stride=5)
    np.testing.assert_array_equal(decode_levels(v), [2, 7, 12, 17, 22, 27])


def test_round_trip_smooth_content(tmp_path):
    rng = np.random.default_rng(0)
    frames = smooth_video(rng, 9, 64, 80)
    p = media.write_video(tmp_path / "sub" / "smooth.mp4", frames, fps=12.5)
    info = media.video_info(p)
    assert (info.num_frames, info.height, info.width, info.fps) == (9, 64, 80, 12.5)
    back = media.read_video(p)
    err = np.abs(back.astype(float) - frames)
    # lossy (yuv420 halves the colour resolution), but far below a wrong frame or channel order
    assert err.mean() < 3.0, err.mean()
    assert np.abs(back.astype(float) - frames[::-1]).mean() > 20 * err.mean()
    assert np.abs(back.astype(float) - frames[..., ::-1]).mean() > 10 * err.mean()
    assert [q.name for q in p.parent.iterdir()] == ["smooth.mp4"]  # no temporary left behind


def test_imageio_writer_and_odd_sizes(tmp_path):
    rng = np.random.default_rng(1)
    frames = smooth_video(rng, 5, 33, 47)
    p = media.write_video(tmp_path / "odd.mp4", frames, fps=10, backend="imageio")
    back = media.read_video(p)
    assert back.shape == (5, 34, 48, 3)  # padded by one row and one column
    assert np.abs(back[:, :33, :47].astype(float) - frames).mean() < 6.0  # tiny, saturated: chroma loss
    # the padding repeats the last row/column
    assert np.abs(back[:, 33].astype(float) - back[:, 32]).mean() < 3.0
    with pytest.raises(ValueError, match="even"):
        media.write_video(tmp_path / "odd2.mp4", frames, fps=10, odd="error")
    assert not (tmp_path / "odd2.mp4").exists()


def test_write_streamed_from_generator(tmp_path):
    p = media.write_video(tmp_path / "gen.mp4", (f for f in coded_video(6)), fps=6)
    np.testing.assert_array_equal(decode_levels(media.read_video(p)), np.arange(6))


@pytest.mark.parametrize(
    "frames,fps,match",
    [
        (np.zeros((0, 16, 16, 3), np.uint8), 10, r"T>0"),
        (np.ones((2, 16, 16, 3), np.float32), 10, "uint8"),
        (np.ones((2, 16, 16), np.uint8), 10, r"\[T>0, H, W, 3\]"),
        (np.ones((2, 16, 16, 3), np.uint8), 0, "fps"),
        (iter([]), 10, "no frames"),
        ([np.ones((16, 16, 3), np.uint8), np.ones((18, 16, 3), np.uint8)], 10, "frame 1 has shape"),
    ],
)
def test_write_bad_input(tmp_path, frames, fps, match):
    with pytest.raises(ValueError, match=match):
        media.write_video(tmp_path / "bad.mp4", frames, fps=fps)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", READ_BACKENDS)
def test_iter_frames_streams(tmp_path, backend):
    """Reading 120 frames must never hold more than a small window of them in Python memory."""
    n, h, w = 120, 64, 64
    p = media.write_video(tmp_path / "long.mp4", (np.full((h, w, 3), i * 2, np.uint8) for i in range(n)), fps=30)
    tracemalloc.start()
    count = 0
    for f in media.iter_frames(p, backend=backend):
        assert f.shape == (h, w, 3)
        count += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == n
    assert peak < 0.4 * n * h * w * 3, peak  # the whole clip would be 1.47 MB


def test_iter_frames_close_early(coded_path):
    it = media.iter_frames(coded_path, backend="imageio")
    first = next(it)
    it.close()  # must stop the ffmpeg process cleanly
    assert first.shape == (32, 64, 3)


@pytest.mark.parametrize("degrees", [90, 270])
def test_display_rotation_applied_by_every_backend(tmp_path, degrees):
    """Phone videos store a display rotation; every backend must return the upright picture."""
    import subprocess

    import imageio_ffmpeg

    frames = np.zeros((3, 32, 64, 3), np.uint8)
    frames[:, :8, :16] = 255  # a white block at the top left
    src = media.write_video(tmp_path / "r0.mp4", frames, fps=5)
    dst = tmp_path / "rot.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation", str(degrees),
         "-i", str(src), "-c", "copy", str(dst)],
        check=True,
    )
    # ffmpeg's display rotation turns the picture counter-clockwise by `degrees`
    expected = np.rot90(frames[0, ..., 0] > 128, degrees // 90)
    for backend in READ_BACKENDS:
        info = media.video_info(dst, backend=backend)
        assert (info.height, info.width) == (64, 32), backend
        v = media.read_video(dst, backend=backend)
        assert v.shape == (3, 64, 32, 3), backend
        assert ((v[0, ..., 0] > 128) == expected).mean() > 0.98, backend


def test_auto_falls_back_when_decord_cannot_copy_frames(tmp_path):
    # decord 0.6 opens a 48-pixel-wide H.264 file but fails copying frames out; auto must fall back
    p = media.write_video(tmp_path / "w48.mp4", coded_video(5, 32, 48), fps=5)
    v = media.read_video(p)
    assert v.shape == (5, 32, 48, 3)
    np.testing.assert_array_equal(decode_levels(v), np.arange(5))


# ------------------------------------------------------------------------- bad video input
def test_missing_video(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        media.read_video(tmp_path / "nope.mp4")


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "empty"),
        (b"this is not a video at all" * 40, "cannot read video"),
        ("random", "cannot read video"),
        ("truncated", "cannot read video|decoding failed|need"),
    ],
)
def test_corrupt_videos(tmp_path, coded_path, content, match):
    p = tmp_path / "broken.mp4"
    if content == "random":
        content = np.random.default_rng(2).bytes(4000)
    elif content == "truncated":
        content = coded_path.read_bytes()[: coded_path.stat().st_size // 3]
    p.write_bytes(content)
    with pytest.raises(ValueError, match=match) as e:
        media.read_video(p)
    assert "broken.mp4" in str(e.value) and "\n" not in str(e.value)
    if match != "empty":
        with pytest.raises(ValueError, match="broken.mp4"):
            media.video_info(p)


def test_directory_and_bad_backend(tmp_path, coded_path):
    with pytest.raises(ValueError, match="not a regular file"):
        media.read_video(tmp_path)
    with pytest.raises(ValueError, match="backend"):
        media.read_video(coded_path, backend="opencv")


def test_too_few_frames(tmp_path):
    p = media.write_video(tmp_path / "one.mp4", coded_video(1), fps=10)
    assert media.read_video(p).shape[0] == 1
    with pytest.raises(ValueError, match=r"one.mp4.*got 1 frame.*need 2"):
        media.read_video(p, min_frames=2)
    with pytest.raises(ValueError, match=r"one.mp4.*need 5"):
        media.read_video(p, num_frames=5)
    q = media.write_video(tmp_path / "four.mp4", coded_video(4), fps=10)
    with pytest.raises(ValueError, match=r"four.mp4.*at 5 fps.*need 3"):
        media.read_video(q, fps=5, num_frames=3)  # 4 frames at 10 fps give 2 at 5 fps


# ---------------------------------------------------------------------------------- images
def save(tmp_path, im: Image.Image, name: str, **kw) -> Path:
    p = tmp_path / name
    im.save(p, **kw)
    return p


def test_image_modes(tmp_path):
    rng = np.random.default_rng(3)
    h, w = 7, 9
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    alpha[0, :3] = [0, 255, 128]
    bg = (10, 200, 77)

    out = media.read_image(save(tmp_path, Image.fromarray(rgb), "rgb.png"))
    np.testing.assert_array_equal(out, rgb)

    # RGBA: out = round((c a + b (255 - a)) / 255), checked against exact fractions
    out = media.read_image(save(tmp_path, Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "rgba.png"), bg)
    exact = (rgb.astype(float) * alpha[..., None] + np.array(bg) * (255.0 - alpha[..., None])) / 255
    assert out.dtype == np.uint8 and out.shape == (h, w, 3)
    assert np.abs(out - exact).max() <= 0.5 + 1e-9
    np.testing.assert_array_equal(out[0, 0], bg)  # alpha 0 -> background
    np.testing.assert_array_equal(out[0, 1], rgb[0, 1])  # alpha 255 -> colour

    gray = rgb[..., 0]
    out = media.read_image(save(tmp_path, Image.fromarray(gray, "L"), "l.png"))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, -1))

    out = media.read_image(save(tmp_path, Image.fromarray(np.dstack([gray, alpha]), "LA"), "la.png"), bg)
    exact = (gray[..., None].astype(float) * alpha[..., None] + np.array(bg) * (255.0 - alpha[..., None])) / 255
    assert np.abs(out - exact).max() <= 0.5 + 1e-9

    # 16-bit grayscale: round(v / 257)
    v16 = rng.integers(0, 65536, (h, w)).astype(np.uint16)
    v16[0, :3] = [0, 65535, 128]
    out = media.read_image(save(tmp_path, Image.fromarray(v16), "g16.png"))
    np.testing.assert_array_equal(out[..., 1], np.floor(v16 / 257 + 0.5).astype(np.uint8))
    assert list(out[0, :3, 0]) == [0, 255, 0]

    # 32-bit integer (mode I, TIFF): clipped to [0, 65535] first
    v32 = v16.astype(np.int32)
    v32[1, 0], v32[1, 1] = -5, 100000
    out = media.read_image(save(tmp_path, Image.fromarray(v32), "i32.tif"))
    assert (out[1, 0, 0], out[1, 1, 0]) == (0, 255)

    # palette with and without a transparent entry
    pal = Image.fromarray(rgb).quantize(colors=16)
    pal_rgb = np.asarray(pal.convert("RGB"))
    np.testing.assert_array_equal(media.read_image(save(tmp_path, pal, "p.png")), pal_rgb)
    idx = np.asarray(pal)
    t = int(idx[0, 0])
    out = media.read_image(save(tmp_path, pal, "pt.png", transparency=t), bg)
    np.testing.assert_array_equal(out[idx == t], np.broadcast_to(bg, out[idx == t].shape))
    np.testing.assert_array_equal(out[idx != t], pal_rgb[idx != t])

    # bilevel and CMYK go through Pillow's RGB conversion
    bits = rng.random((h, w)) > 0.5
    out = media.read_image(save(tmp_path, Image.fromarray(bits), "b.png"))
    np.testing.assert_array_equal(out[..., 2], np.where(bits, 255, 0))
    cmyk = Image.fromarray(rgb).convert("CMYK")
    out = media.read_image(save(tmp_path, cmyk, "c.tif"))
    np.testing.assert_array_equal(out, np.asarray(cmyk.convert("RGB")))


def test_image_exif_orientation(tmp_path):
    rgb = np.random.default_rng(4).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    p = save(tmp_path, im, "o.tif", exif=exif)
    out = media.read_image(p)
    np.testing.assert_array_equal(out, np.rot90(rgb, k=-1))


def test_image_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        media.read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.png.*empty"):
        media.read_image(tmp_path / "empty.png")
    (tmp_path / "junk.png").write_bytes(np.random.default_rng(5).bytes(500))
    with pytest.raises(ValueError, match="junk.png.*cannot decode"):
        media.read_image(tmp_path / "junk.png")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(6).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:2000])
    with pytest.raises(ValueError, match="cut.png.*cannot decode"):
        media.read_image(tmp_path / "cut.png")
    p = save(tmp_path, Image.fromarray(np.random.default_rng(7).random((4, 4)).astype(np.float32)), "f.tif")
    with pytest.raises(ValueError, match=r"f.tif.*unsupported image mode 'F'"):
        media.read_image(p)
    with pytest.raises(ValueError, match="background"):
        media.read_image(save(tmp_path, Image.new("RGB", (2, 2)), "ok.png"), background=(1, 2))


# ---------------------------------------------------------------------------------- resize
@pytest.mark.parametrize("mode", ["crop", "pad"])
@pytest.mark.parametrize("src", [(40, 60), (90, 30), (48, 64)])
def test_resize_geometry(mode, src):
    """A bright block lands where `fit_geometry` says; padding is pad_value; aspect is kept."""
    sh, sw = src
    img = np.full((sh, sw, 3), 50, np.uint8)
    by, bx = sh // 2 - 2, sw // 2 + 3  # an 8x8 block near the centre (kept by every crop here)
    img[by : by + 8, bx : bx + 8] = 250
    out = media.resize_to(img, 32, 48, mode=mode, pad_value=(1, 2, 3), resample="nearest")
    assert out.shape == (32, 48, 3)
    fit = media.fit_geometry(sh, sw, 32, 48, mode)
    sx, sy = fit.scale(sh, sw)
    assert abs(sx - sy) < 0.05  # aspect kept (up to rounding to whole pixels)
    if mode == "pad":
        assert fit.resized_h == 32 or fit.resized_w == 48
        border = np.ones((32, 48), bool)
        border[fit.top : fit.top + fit.resized_h, fit.left : fit.left + fit.resized_w] = False
        assert border.any() == (abs(sh / sw - 32 / 48) > 0.01)
        assert (out[border] == (1, 2, 3)).all() and (out[~border] != (1, 2, 3)).any(axis=-1).all()
    else:
        assert fit.resized_h >= 32 and fit.resized_w >= 48 and (fit.resized_h == 32 or fit.resized_w == 48)
    ys, xs = np.nonzero(out[..., 0] > 150)
    centre = fit.map_points(np.array([bx + 4, by + 4]), sh, sw)
    assert abs(xs.mean() + 0.5 - centre[0]) <= 1.0 and abs(ys.mean() + 0.5 - centre[1]) <= 1.0


def test_resize_video_matches_frames_and_errors():
    rng = np.random.default_rng(8)
    vid = rng.integers(0, 256, (3, 30, 50, 3), dtype=np.uint8)
    out = media.resize_to(vid, 64, 48, mode="crop")
    assert out.shape == (3, 64, 48, 3)
    for t in range(3):
        np.testing.assert_array_equal(out[t], media.resize_to(vid[t], 64, 48, mode="crop"))
    with pytest.raises(ValueError, match="multiple of 16"):
        media.resize_to(vid, 60, 48)
    with pytest.raises(ValueError, match="uint8"):
        media.resize_to(vid.astype(np.float32), 64, 48)
    with pytest.raises(ValueError, match="mode"):
        media.resize_to(vid, 64, 48, mode="stretch")
    with pytest.raises(ValueError, match="pad_value"):
        media.resize_to(vid, 64, 48, mode="pad", pad_value=(1, 2))
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        media.resize_to(vid[0, 0], 64, 48)


# ----------------------------------------------------------------------------- real assets
@needs_assets
def test_talkinghead_needs_fallback():
    p = ASSETS / "talkinghead-2.mp4"
    info = media.video_info(p)
    assert info.backend != "decord" and (info.height, info.width) == (350, 300) and info.fps == 30
    v = media.read_video(p, num_frames=16, stride=20)
    assert v.shape == (16, 350, 300, 3) and v.std() > 10
    if HAVE_DECORD:
        with pytest.raises(ValueError, match="talkinghead-2.mp4.*decord"):
            media.read_video(p, backend="decord", num_frames=1)
    # pyav and imageio agree: the video stream starts 8.3 s into the container; no padded frames
    a = media.read_video(p, backend="pyav", num_frames=3)
    b = media.read_video(p, backend="imageio", num_frames=3)
    assert np.abs(a.astype(int) - b).mean() < 1.0
    assert np.abs(a[0].astype(int) - a[2]).mean() > 0.5  # real motion, not a repeated first frame


@needs_assets
def test_dance_8fps():
    p = ASSETS / "dance1_right.mp4"
    info = media.video_info(p)
    assert (info.num_frames, info.fps, info.height, info.width) == (32, 8.0, 1216, 768)
    v = media.read_video(p, fps=4, num_frames=4)
    full = media.read_video(p, num_frames=7)
    np.testing.assert_array_equal(v, full[[0, 2, 4, 6]])


@needs_assets
def test_mtv_sampled_to_target_fps():
    p = ASSETS / "mtv-00001.mp4"
    info = media.video_info(p)
    assert (info.num_frames, info.fps, info.height, info.width) == (127, 30.0, 1080, 604)
    idx = media.sample_indices(info.num_frames, info.fps, fps=8, start=10, num_frames=6)
    v = media.read_video(p, fps=8, start=10, num_frames=6)
    assert v.shape == (6, 1080, 604, 3)
    for k in (0, 3, 5):
        np.testing.assert_array_equal(v[k], media.read_video(p, start=idx[k], num_frames=1)[0])
    small = media.resize_to(v, 512, 288, mode="pad")
    assert small.shape == (6, 512, 288, 3)


@needs_assets
@pytest.mark.parametrize("name", ["anyone-1.png", "anyone-2.png"])
def test_rgba_assets(name):
    im = Image.open(ASSETS / name)
    assert im.mode == "RGBA"
    rgba = np.asarray(im)
    white = media.read_image(ASSETS / name)
    black = media.read_image(ASSETS / name, background=(0, 0, 0))
    opaque = rgba[..., 3] == 255
    assert white.shape == rgba.shape[:2] + (3,)
    np.testing.assert_array_equal(white[opaque], rgba[..., :3][opaque])
    np.testing.assert_array_equal(black[opaque], rgba[..., :3][opaque])
    # these assets are RGBA but fully opaque: the background must not show anywhere
    if opaque.all():
        np.testing.assert_array_equal(white, black)
    else:
        assert (white[~opaque] != black[~opaque]).any()
