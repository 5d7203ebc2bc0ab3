"""End-to-end DreamActor-M2's data (paper sec. 3.4, app. D): pseudo-pairs from a pose model, filtered.

    plan.py        which segment of which source video and which reference of another identity
                   each unit gets (pure, deterministic, shardable)
    generator.py   M_pose: a trained pose checkpoint through the sampler of launch/sample.py
    synthesize.py  the synthesis run: V_src segment -> P_src -> V_o = M_pose(P_src, I_o), resumable
    units.py       a unit on disk (source.mp4, generated.mp4, reference.png, pose.mp4, unit.json),
                   written atomically
    filter.py      Video-Bench scores per unit (cached), keep mean > threshold, the manifest and the
                   pair list that tools/preprocess.py takes for configs/e2e.py (Eq. 4)

Commands: tools/synthesize_pairs.py, tools/filter_pairs.py; the workflow is in docs/e2e.md.
"""
