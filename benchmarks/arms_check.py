"""Arms down: how much of the arms does the model measure? On the 512x512 DICOM example series (taken
with the arms beside the trunk), per slice: the muscle and SAT the network's labels put in the arms
that lie apart from the trunk (`include_arms`, before `measuring/trunk.clear_arms` clears them), and
the trunk's muscle area, which the arms would inflate. An arm pressed against the flank is part of
the trunk here: look at `docs/real_ct_dicom_series.png` for those.

    .venv/bin/python benchmarks/arms_check.py [--model DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "AdiposeSeg"))

from AdiposeSegLib.measuring.trunk import parts_beside  # noqa: E402
from AdiposeSegLib.model.model_card import load_model  # noqa: E402
from AdiposeSegLib.reading.image_io import read_ct  # noqa: E402
from AdiposeSegLib.running.pipeline import segment_image  # noqa: E402
from AdiposeSegLib.tissues import MUSCLE, SAT, SegmentOptions  # noqa: E402

SERIES = ROOT.parent / "shared" / "data" / "real-ct" / "totalsegmentator-example" / "example_ct_dicom"


def main() -> int:
    parser = argparse.ArgumentParser(description="Muscle and SAT the model puts in the arms (arms-down DICOM series)")
    parser.add_argument("--model", help="model directory (default: the bundled model)")
    args = parser.parse_args()
    model = load_model(args.model) if args.model else load_model()
    image = read_ct(str(SERIES))
    result = segment_image(image, model, SegmentOptions(device="cpu", find_levels=False, include_arms=True))
    labels, hu = result.canonical_labels, result.canonical_hu
    pixel_cm2 = image.GetSpacing()[0] * image.GetSpacing()[1] / 100
    arm_muscle, arm_sat, trunk_muscle = [], [], []
    for k in range(labels.shape[0]):
        parts, sizes, _, beside = parts_beside(hu[k])   # the body parts the pipeline takes for arms
        trunk = parts == (np.argmax(sizes) if sizes is not None else 1)
        apart = np.isin(parts, beside)
        arm_muscle.append(((labels[k] == MUSCLE) & apart).sum() * pixel_cm2)
        arm_sat.append(((labels[k] == SAT) & apart).sum() * pixel_cm2)
        trunk_muscle.append(((labels[k] == MUSCLE) & trunk).sum() * pixel_cm2)
    print(f"model {model.card.name} {model.card.version}; {labels.shape[0]} slices")
    print(f"  in the arms lying apart, per slice: muscle {np.mean(arm_muscle):.1f} cm2 (max {np.max(arm_muscle):.1f}), "
          f"SAT {np.mean(arm_sat):.1f} cm2 (max {np.max(arm_sat):.1f})")
    print(f"  the trunk's muscle (the arms pressed against it included): {np.mean(trunk_muscle):.1f} cm2 per slice; "
          f"the arms lying apart would add {100 * np.sum(arm_muscle) / np.sum(trunk_muscle):.0f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
