"""Cases, runner and report on synthetic media with a fake pose estimator: a video scored against
itself is ideal, bad inputs are counted skips, resuming keeps finished cases, shards split the
bench, and the report (Markdown, self-contained HTML, contact sheets, A/B) says what happened."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dreamactor_jax import media
from dreamactor_jax.eval.cases import Evaluator, MetricOptions
from dreamactor_jax.eval.manifest import load_bench
from dreamactor_jax.eval.report import write_report
from dreamactor_jax.eval.runner import find_video, parse_shard, run_cases
from dreamactor_jax.eval.scorers import make_scorer
from dreamactor_jax.pose import PoseClip, PoseFrame, standard_person

T, H, W = 12, 48, 64


def poses(t=T):
    """The true poses of the synthetic driving video: a person walking right, swinging a forearm
    rigidly about the elbow (in pixels, so limb lengths stay what they are)."""
    out, size = [], np.array([W, H], np.float64)
    for i in range(t):
        p = standard_person((0.35 + 0.02 * i, 0.55), 0.7, hands=False)
        body = p.body.copy()
        a = 0.15 * i
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        e = body[0, 3, :2] * size  # r_elbow; r_wrist (4) turns about it
        body[0, 4, :2] = (e + (body[0, 4, :2] * size - e) @ rot.T) / size
        out.append(PoseFrame(body, p.hands, p.face))
    return out


POSES = poses()


def frame(i, rng):
    """Frame i: a graded background and a figure whose left edge is at x = 4 + 4i (the fake
    estimator reads the frame's index back from it, through mp4 compression)."""
    f = np.full((H, W, 3), 90, np.uint8)
    f[:, :] = (np.arange(W)[None, :, None] * 2 + 40).astype(np.uint8)
    x = 4 + 4 * i  # fast enough that the clip's median is the background
    f[14:42, x:x + 12] = (210, 80, 60)
    return f


def fake_estimator(video: bool):
    def est(img):
        row = img[28].astype(int)
        cols = np.flatnonzero((row[:, 0] > 170) & (row[:, 1] < 130) & (row[:, 2] < 110))
        if img.shape[:2] != (H, W) or not cols.size:
            return PoseFrame.empty()
        i = int(round((cols[0] - 4) / 4))
        return POSES[i] if 0 <= i < len(POSES) else PoseFrame.empty()
    return est


@pytest.fixture()
def world(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.stack([frame(i, rng) for i in range(T)])
    (tmp_path / "media").mkdir()
    media.write_video(tmp_path / "media" / "walk.mp4", frames, 8.0, crf=0)
    Image.fromarray(frames[0]).save(tmp_path / "media" / "me.png")
    Image.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(tmp_path / "media" / "plain.png")
    lines = [
        {"type": "driving", "id": "walk", "path": "walk.mp4", "subject": "human", "region": "full", "camera": "static"},
        {"type": "reference", "id": "me", "path": "me.png", "subject": "human", "region": "full"},
        {"type": "reference", "id": "plain", "path": "plain.png", "subject": "non-human", "region": "full"},
        {"type": "reference", "id": "gone", "path": "gone.png", "subject": "human", "region": "upper"},
        {"type": "pair", "driving": "walk", "reference": "me", "ground_truth": "driving"},
        {"type": "pair", "driving": "walk", "reference": "plain"},
        {"type": "pair", "driving": "walk", "reference": "gone"},
    ]
    (tmp_path / "bench.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    bench = load_bench(tmp_path / "bench.jsonl", tmp_path / "media")
    outputs = tmp_path / "outputs"  # "another system": walk__me is the driving video itself
    outputs.mkdir()
    (outputs / "walk__me.mp4").write_bytes((tmp_path / "media" / "walk.mp4").read_bytes())
    still = np.repeat(frames[:1], T, 0)  # a still image as the output
    media.write_video(outputs / "walk__plain.mp4", still, 8.0, crf=0)
    return tmp_path, bench, outputs, frames


def evaluator(bench, out, scorer=None):
    return Evaluator(bench, out, scorer or make_scorer("offline", segmenter="motion"), MetricOptions(segmenter="motion"),
                     estimator_factory=fake_estimator, segmenter=None)


def test_a_video_scored_against_itself_is_ideal_and_skips_are_counted(world):
    root, bench, outputs, _ = world
    out = root / "out"
    counts = run_cases(bench, out, evaluator(bench, out), videos=outputs, progress=False)
    assert counts == {"cases": 3, "kept": 0, "generated": 0, "scored": 2, "skipped": 1}
    me = json.loads((out / "cases" / "walk__me" / "result.json").read_text())
    assert me["status"] == "ok" and me["frames"] == T and me["fps"] == 8.0
    m = me["metrics"]
    assert m["motion"]["all"]["pck@0.05"] == 1.0 and m["motion"]["all"]["err"] == 0.0 and m["motion"]["found"] == 1.0
    assert m["shape"]["shape_err"] == pytest.approx(0.0, abs=1e-6)  # float32 keypoints
    assert m["fidelity"]["psnr"] == 100.0 and m["fidelity"]["ssim"] == pytest.approx(1.0)
    assert m["background"]["flicker"] < 1.0 and not me["flags"]
    assert me["score"]["scorer"] == "offline:v1" and 1 <= me["score"]["mean"] <= 5
    plain = json.loads((out / "cases" / "walk__plain" / "result.json").read_text())
    assert plain["status"] == "ok" and plain["metric_skips"]["motion"].startswith("non-human reference")
    gone = json.loads((out / "cases" / "walk__gone" / "result.json").read_text())
    assert gone["status"] == "skipped" and gone["skip"]["stage"] == "input" and "missing file" in gone["skip"]["reason"]
    with Image.open(out / "cases" / "walk__me" / "contact.png") as im:
        assert im.width > 5 * 32 and im.height > 2 * 64
    # resuming keeps what is finished, tries the skipped case again
    counts = run_cases(bench, out, evaluator(bench, out), videos=outputs, progress=False)
    assert counts["kept"] == 2 and counts["skipped"] == 1 and counts["scored"] == 0
    # a still image instead of the driving motion: no motion fidelity
    still_me = outputs / "still"
    still_me.mkdir()
    (still_me / "walk__me.mp4").write_bytes((outputs / "walk__plain.mp4").read_bytes())
    out2 = root / "out_still"
    run_cases(bench, out2, evaluator(bench, out2), videos=still_me, progress=False)
    s = json.loads((out2 / "cases" / "walk__me" / "result.json").read_text())["metrics"]
    assert s["motion"]["all"]["pck@0.05"] < 0.5 and s["fidelity"]["psnr"] < 40


def test_report_tables_skips_html_and_ab(world):
    root, bench, outputs, frames = world
    out = root / "out"
    run_cases(bench, out, evaluator(bench, out), videos=outputs, progress=False)
    summ = write_report(bench, out, title="synthetic")
    assert summ["scored"] == 2 and summ["skipped"] == 1 and summ["pending"] == 0
    md = (out / "report.md").read_text()
    assert "### Video-Bench dimensions (1-5)" in md and "mean of six" in md and "### by pair kind" in md
    assert "| human -> non-human | 1 |" in md and "PROXY" in md
    assert "missing file" in md and "### Metric skips" in md and "non-human reference" in md, md
    assert "(cases/walk__me/contact.png)" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/jpeg;base64,") == 2 and "src='http" not in page and "<table>" in page
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
    # B: the same cases from a noisier system; A/B reports B - A per dimension and per case
    noisy_dir = root / "noisy"
    noisy_dir.mkdir()
    rng = np.random.default_rng(3)
    for pid in ("walk__me", "walk__plain"):
        v = media.read_video(outputs / f"{pid}.mp4")
        media.write_video(noisy_dir / f"{pid}.mp4", np.clip(v + rng.normal(0, 30, v.shape), 0, 255).astype(np.uint8), 8.0)
    out_b = root / "out_b"
    run_cases(bench, out_b, evaluator(bench, out_b), videos=noisy_dir, progress=False)
    write_report(bench, out_b, compare=out, label="noisy", compare_label="clean")
    md = (out_b / "report.md").read_text()
    assert "### A/B: noisy (A) vs clean (B), on the 2 case(s) scored in both" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| Imaging Quality |"))
    a, b, diff = (float(x) for x in row.split("|")[2:5])
    assert b > a and diff == pytest.approx(b - a, abs=0.011) and "2 / 0 / 0" in row


def test_non_json_answers_and_unreadable_videos_are_skips(world):
    root, bench, outputs, _ = world

    def transport(req):
        return "Sure! I'd rate it a four."
    out = root / "out_judge"
    judge = make_scorer("gemini", transport=transport, sleep=lambda s: None, answer_retries=1)
    (outputs / "walk__plain.mp4").write_bytes(b"not a video")
    counts = run_cases(bench, out, evaluator(bench, out, judge), videos=outputs, progress=False)
    assert counts["skipped"] == 3 and counts["scored"] == 0
    me = json.loads((out / "cases" / "walk__me" / "result.json").read_text())
    assert me["skip"]["stage"] == "score" and me["skip"]["reason"].startswith("malformed")
    assert me["metrics"]["motion"]["all"]["pck@0.05"] == 1.0  # the metrics are kept
    plain = json.loads((out / "cases" / "walk__plain" / "result.json").read_text())
    assert "not a readable video" in plain["skip"]["reason"]
    summ = write_report(bench, out)
    assert summ["scored"] == 0 and summ["video_bench"]["mean"] is None  # never a silent zero
    assert "malformed" in (out / "report.md").read_text()


def test_shards_and_video_lookup(world, tmp_path):
    root, bench, outputs, _ = world
    assert parse_shard(None) == (0, 1) and parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "a/b", "1"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)
    out = root / "out_shard"
    counts = run_cases(bench, out, evaluator(bench, out), videos=outputs, shard=(1, 2), progress=False)
    assert counts["cases"] == 1 and sorted(p.name for p in (out / "cases").iterdir()) == ["walk__plain"]
    summ = write_report(bench, out)
    assert summ["pending"] == 2 and "not run yet" in (out / "report.md").read_text()
    (tmp_path / "a" / "x").mkdir(parents=True)
    (tmp_path / "a" / "x" / "video.webm").write_bytes(b"v")
    (tmp_path / "a" / "y.mov").write_bytes(b"v")
    assert find_video(tmp_path / "a", "x").name == "video.webm" and find_video(tmp_path / "a", "y").name == "y.mov"
    assert find_video(tmp_path / "a", "z") is None


def test_pose_clips_from_keypoint_files_are_retimed(tmp_path):
    from dreamactor_jax.eval.cases import resample

    clip = PoseClip(POSES, W, H, 24.0)
    r = resample(clip, 8.0, 4)
    assert len(r) == 4 and r.fps == 8.0 and [f is POSES[i] for f, i in zip(r.frames, (0, 3, 6, 9))] == [True] * 4
    assert len(resample(clip, 24.0, 5)) == 5


def test_fvd_of_a_run_needs_two_videos_a_side(world):
    """FVD plumbing over a run's records, with a stand-in feature model (not I3D)."""
    from dreamactor_jax.eval.features import bench_fvd
    from dreamactor_jax.eval.report import load_records

    root, bench, outputs, _ = world
    out = root / "out_fvd"
    run_cases(bench, out, evaluator(bench, out), videos=outputs, progress=False)
    records = list(load_records(bench, out).values())

    def model(videos):  # mean colour of each quarter of the clip: a crude video feature
        return np.stack([np.concatenate([q.reshape(-1, 3).mean(0) for q in np.array_split(v, 4)]) for v in videos])
    with pytest.raises(ValueError, match="at least 2 videos on each side, got 2 and 1"):
        bench_fvd(model, bench, records)  # two outputs, but one driving video
