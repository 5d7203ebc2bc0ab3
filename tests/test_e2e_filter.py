"""Quality filtering (dreamactor_jax/e2e/filter.py, tools/filter_pairs.py) with a fake scorer that
follows eval.videobench's Scorer protocol: the threshold rule, scores saved so a second filter
asks nothing, rescoring, failures counted, the manifest and the pair list preprocess reads."""

from __future__ import annotations

import sys
import types

import pytest
from cli_testlib import run_tool
from e2e_testlib import FakePoseModel, FakeScorer, fake_estimator, make_inputs, read_jsonl

from dreamactor_jax.data import preprocess as pp
from dreamactor_jax.e2e import filter as flt
from dreamactor_jax.e2e import plan, synthesize, units

# unit -> mean: above, exactly at (not kept: the paper keeps "greater than 4"), below the threshold
MEANS = {"a-u000": 4.5, "a-u001": 4.0, "b-u000": 3.2, "b-u001": 4.25}


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e_units")
    vids, refs = make_inputs(root / "in")
    s = synthesize.SynthSettings(frames=9, fps=8.0, height=32, width=32, units_per_video=2)
    synthesize.run(plan.read_sources(vids)[0], plan.read_references(refs)[0], root / "units", s,
                   generate=FakePoseModel(), estimator=fake_estimator, progress=False)
    return root / "units"


@pytest.fixture
def fresh_units(unit_root, tmp_path):
    import shutil

    shutil.copytree(unit_root, tmp_path / "units")
    return tmp_path / "units"


def test_threshold_rule_is_strictly_greater():
    assert flt.filter_by_threshold({"x": 4.01, "y": 4.0, "z": None, "w": 2.0}) == (["x"], ["w", "y", "z"])
    assert flt.filter_by_threshold({"x": 4.01, "y": 4.0, "w": 2.0}, 1.5) == (["w", "x", "y"], [])
    assert flt.kept_at([4.5, 4.0, 3.2, None], (3.0, 4.0, 4.5)) == {3.0: 3, 4.0: 1, 4.5: 0}
    s = {d: v for d, v in zip(flt.DIMENSIONS, (5, 4, 4, 3, 5, 3))}
    assert flt.mean_score(s) == pytest.approx(4.0)
    for bad in ({**s, "motion_smoothness": 0.5}, {**s, "imaging_quality": float("nan")},
                {k: v for k, v in s.items() if k != "subject_consistency"}, {**s, "aesthetic_quality": "4"}):
        with pytest.raises(ValueError, match="expected a number in \\[1, 5\\]"):
            flt.checked_scores(types.SimpleNamespace(scores=bad))


def test_scores_are_saved_so_a_second_filter_asks_nothing(fresh_units):
    us = units.list_units(fresh_units)
    scorer = FakeScorer(MEANS)
    res, rep = flt.score_units(us, scorer, progress=False)
    assert (rep.scored, rep.cached, rep.failed) == (4, 0, {}) and sorted(scorer.calls) == sorted(MEANS)
    assert {k: round(v["mean"], 6) for k, v in res.items()} == MEANS
    rows = flt.manifest_rows(us, res, scorer.name, 4.0)
    assert [r["id"] for r in rows if r["kept"]] == ["a-u000", "b-u001"]

    again = FakeScorer(MEANS)
    res2, rep2 = flt.score_units(us, again, progress=False, workers=3)
    assert (rep2.scored, rep2.cached, again.calls) == (0, 4, []) and res2 == res
    rows = flt.manifest_rows(us, res2, again.name, 3.0)
    assert [r["id"] for r in rows if r["kept"]] == ["a-u000", "a-u001", "b-u000", "b-u001"]

    changed = FakeScorer({k: 1.5 for k in MEANS})  # same scorer name, rescored: the new answers win
    res3, rep3 = flt.score_units(us, changed, rescore=True, progress=False)
    assert rep3.scored == 4 and all(v["mean"] == pytest.approx(1.5) for v in res3.values())
    other = FakeScorer(MEANS, name="other:v2")    # another scorer does not reuse fake:v1's scores
    flt.score_units(us, other, progress=False)
    assert len(other.calls) == 4
    assert sorted(units.read_scores(us[0])) == ["fake:v1", "other:v2"]


def test_unscorable_units_are_counted_dropped_and_retried(fresh_units):
    us = units.list_units(fresh_units)
    scorer = FakeScorer(MEANS, fail=("a-u000",), bad=("b-u001",))
    res, rep = flt.score_units(us, scorer, progress=False)
    assert rep.scored == 2 and sorted(rep.failed) == ["a-u000", "b-u001"]
    assert "answer not JSON" in rep.failed["a-u000"] and "motion_smoothness = 7.0" in rep.failed["b-u001"]
    rows = {r["id"]: r for r in flt.manifest_rows(us, res, scorer.name, 3.0, rep.failed)}
    assert not rows["a-u000"]["kept"] and rows["a-u000"]["mean"] is None and "error" in rows["a-u000"]
    assert rows["a-u001"]["kept"] and "error" not in rows["a-u001"]
    retry = FakeScorer(MEANS)
    flt.score_units(us, retry, progress=False)
    assert sorted(retry.calls) == ["a-u000", "b-u001"]  # failures were not saved; the others were


# ---------------------------------------------------------------------------------------------
# the command line, with the fake scorer behind eval.scorers.make_scorer
# ---------------------------------------------------------------------------------------------


def _cli(argv) -> int:
    return run_tool("tools/filter_pairs.py", argv)


@pytest.fixture
def videobench(monkeypatch):
    """A stand-in `dreamactor_jax.eval.scorers` module whose make_scorer records its arguments."""
    made = []

    def make_scorer(kind, **options):
        made.append((kind, options))
        return FakeScorer(MEANS, name=f"{kind}:fake")
    mod = types.ModuleType("dreamactor_jax.eval.scorers")
    mod.make_scorer = make_scorer
    pkg = sys.modules.get("dreamactor_jax.eval") or types.ModuleType("dreamactor_jax.eval")
    monkeypatch.setitem(sys.modules, "dreamactor_jax.eval", pkg)
    monkeypatch.setitem(sys.modules, "dreamactor_jax.eval.scorers", mod)
    monkeypatch.setattr(pkg, "scorers", mod, raising=False)
    return made


def test_cli_filters_writes_manifest_and_pairs_that_preprocess_reads(fresh_units, tmp_path, videobench, capsys):
    out = tmp_path / "lists" / "pairs.jsonl"
    assert _cli(["--units", fresh_units, "--scorer", "gemini", "--model", "gemini-2.5-pro", "-o", out, "--quiet"]) == 0
    assert videobench == [("gemini", {"model": "gemini-2.5-pro"})]
    text = capsys.readouterr().out
    assert "4 scored now" in text and "kept 2/4 with mean > 4" in text and "> 3: 4" in text
    manifest = read_jsonl(fresh_units / "manifest.jsonl")
    assert [(r["id"], r["kept"], r["mean"]) for r in manifest] == [
        ("a-u000", True, 4.5), ("a-u001", False, 4.0), ("b-u000", False, 3.2), ("b-u001", True, 4.25)]
    assert set(manifest[0]["scores"]) == set(flt.DIMENSIONS) and manifest[0]["scorer"] == "gemini:fake"
    # the pair list: V_src is the video (target; its frame 0 is I_ref), V_o drives; I_o is not passed
    report = pp.Report()
    items = pp.read_manifest(out, report)
    assert [i.id for i in items] == ["a-u000", "b-u001"] and not report.skipped
    assert items[0].video.resolve() == (fresh_units / "a-u000" / "source.mp4").resolve()
    assert items[0].driving.resolve() == (fresh_units / "a-u000" / "generated.mp4").resolve()
    assert items[0].reference is None

    # another threshold: no scorer call, more kept
    assert _cli(["--units", fresh_units, "--scorer", "gemini", "--threshold", "3", "-o", out, "--quiet"]) == 0
    assert "0 scored now, 4 from saved scores" in capsys.readouterr().out
    assert len(read_jsonl(out)) == 4
    # nothing above the threshold: exit 1, files still written; bad arguments: one line, exit 2
    assert _cli(["--units", fresh_units, "--scorer", "gemini", "--threshold", "4.9", "-o", out, "--quiet"]) == 1
    assert "no unit has a mean above 4.9" in capsys.readouterr().err and read_jsonl(out) == []
    for argv, needle in ((["--units", fresh_units, "--scorer", "gemini", "--threshold", "6"], "--threshold 6"),
                         (["--units", tmp_path / "nothing", "--scorer", "offline"], "--units"),
                         (["--units", tmp_path / "lists", "--scorer", "offline"], "no complete unit")):
        assert _cli(argv + ["--quiet"]) == 2
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and needle in lines[0], lines


def test_a_missing_scorer_module_is_one_line(fresh_units, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dreamactor_jax.eval.scorers", None)  # import fails
    assert _cli(["--units", fresh_units, "--scorer", "offline", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dreamactor_jax.eval.scorers" in err[0]
