"""The bundled model: a real card, and agreement with TotalSegmentator on real CT it never trained on.

The default model trained on slices 12..29 of example_ct_sm (plus phantoms); slices 0..9 are held
out, with slices 10..11 as a gap. Targets from the training issue: SAT Dice >= 0.90, Muscle >= 0.85.
"""
import pytest
import SimpleITK as sitk

from AdiposeSegLib.measuring.evaluate import dice
from AdiposeSegLib.reading.image_io import read_ct
from AdiposeSegLib.running.pipeline import segment_image
from AdiposeSegLib.tissues import SegmentOptions


def test_card_is_complete_and_its_real_training_slices_miss_the_held_out_slab(default_model):
    card = default_model.card
    assert card.trained
    assert card.command.startswith("python -m training train")
    real = [c for c in card.training_data["train_cases"] if c.startswith("ts_example_sm_z")]
    assert real, card.training_data
    for case in real:  # names carry the slice range, e.g. ts_example_sm_z12-30 (stop excluded)
        start, stop = (int(v) for v in case.rsplit("_z", 1)[1].split("-"))
        assert start >= 12 and stop > start  # slices 0..9 are the held-out slab, 10..11 the gap


def test_agreement_with_totalsegmentator_on_held_out_slab(default_model, example_ct_sm, example_tissue_labels):
    ct = read_ct(example_ct_sm)
    result = segment_image(ct, default_model, SegmentOptions(device="cpu", slices=(0, 10)))
    pred = sitk.GetArrayViewFromImage(result.labels)[:10]
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(example_tissue_labels)))[:10]
    sat, muscle = dice(pred == 1, ref == 1), dice(pred == 3, ref == 3)
    torso = dice((pred == 2) | (pred == 4), ref == 2)
    assert sat >= 0.945, sat          # 0.3.0 under labelling rules 4: 0.954 (0.950 before the SAT's rim)
    assert muscle >= 0.85, muscle
    assert torso >= 0.80, torso
    # issue 12's own target: the muscle volume within 5% of TotalSegmentator's on this slab (0.3.0 under
    # labelling rules 4: -2.9%; it was -5.5% before the muscle's rim was taken back from SAT)
    volume = (pred == 3).sum() / (ref == 3).sum() - 1
    assert abs(volume) <= 0.05, volume


def test_demo_runs_the_whole_path(tmp_path, default_model):
    from AdiposeSegLib.running.cli import main

    assert main(["demo", "-o", str(tmp_path), "--device", "cpu"]) == 0
    assert main(["demo", "-o", str(tmp_path), "--device", "cpu"]) == 0  # the README's first command, run again
    names = {p.name for p in tmp_path.iterdir()}
    assert {"demo_phantom_ct.nrrd", "demo_phantom.seg.nrrd", "demo_phantom_slices.csv", "demo_phantom_overlay.png"} <= names
    from AdiposeSegLib.measuring.evaluate import compare
    from AdiposeSegLib.reading.labels_io import read_label_map

    scores = compare(read_label_map(tmp_path / "demo_phantom.seg.nrrd"), read_label_map(tmp_path / "demo_phantom_truth.seg.nrrd"))
    assert scores["SAT"]["dice"] > 0.9 and scores["Muscle"]["dice"] > 0.8


def test_rotated_copy_of_real_ct_gives_the_same_areas(default_model, example_ct):
    """Same anatomy stored in another voxel order (direction cosines changed): areas agree within 1%."""
    image = read_ct(example_ct)[:, :, 60:80]  # around L3
    moved = sitk.Flip(sitk.PermuteAxes(image, (1, 0, 2)), (True, False, True))
    assert moved.GetDirection() != image.GetDirection()
    a = segment_image(image, default_model, SegmentOptions(device="cpu"))
    b = segment_image(moved, default_model, SegmentOptions(device="cpu"))
    for name in ("SAT", "VAT", "Muscle"):
        va, vb = a.statistics.totals[f"{name}_volume_cm3"], b.statistics.totals[f"{name}_volume_cm3"]
        assert va > 50
        assert vb == pytest.approx(va, rel=0.01)
