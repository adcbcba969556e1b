"""The training package: dataset reading, splits, sampling, resume == uninterrupted, learning, evaluation."""
import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from AdiposeSegLib.errors import InputReadError
from AdiposeSegLib.model.model_card import load_model
from AdiposeSegLib.reporting.writers import segmentation_image, write_labelmap
from training.dataset import CaseSpec, epoch_indices, load_case, read_dataset, split_cases, to_grid_slices
from training.phantom import phantom_volume
from training.train import TrainConfig, train


def _phantom_case(folder, name, seed, slices=3):
    ct, lab = phantom_volume(seed=seed, size=128, slices=slices)
    sitk.WriteImage(ct, str(folder / f"{name}.nrrd"))
    return ct, lab


def _write_renamed_seg(lab, path, names):
    img = segmentation_image(lab)
    for i, name in enumerate(names):
        img.SetMetaData(f"Segment{i}_Name", name)
        img.SetMetaData(f"Segment{i}_ID", f"Segment_{i + 1}")
    sitk.WriteImage(img, str(path), useCompression=True)


def test_seg_nrrd_with_renamed_segments(tmp_path):
    ct, lab = _phantom_case(tmp_path, "case1", seed=3)
    _write_renamed_seg(lab, tmp_path / "case1.seg.nrrd", ["Subcutaneous Fat", "visceral_fat", "Skeletal Muscle", "imat"])
    specs = read_dataset(tmp_path)
    assert [s.case_id for s in specs] == ["case1"]
    case = load_case(specs[0])
    assert np.array_equal(case.labels, sitk.GetArrayViewFromImage(lab))
    assert set(np.unique(case.labels)) <= {0, 1, 2, 3, 4} and (case.labels == 3).any()


def test_unknown_segment_names_are_listed(tmp_path):
    ct, lab = _phantom_case(tmp_path, "case1", seed=3)
    _write_renamed_seg(lab, tmp_path / "case1.seg.nrrd", ["SAT", "Liver", "Muscle", "Spleen"])
    with pytest.raises(InputReadError, match="'Liver', 'Spleen'"):
        load_case(read_dataset(tmp_path)[0])


def test_label_map_and_binary_masks(tmp_path):
    ct, lab = _phantom_case(tmp_path, "case2", seed=4)
    write_labelmap(lab, tmp_path / "case2_labels.nii.gz")
    case = load_case(read_dataset(tmp_path)[0])
    assert np.array_equal(case.labels, sitk.GetArrayViewFromImage(lab))
    masks = {}
    for name, value in (("subcutaneous_fat", 1), ("skeletal_muscle", 3)):
        m = sitk.Cast(lab == value, sitk.sitkUInt8)
        sitk.WriteImage(m, str(tmp_path / f"{name}.nii.gz"))
        masks[name] = str(tmp_path / f"{name}.nii.gz")
    case = load_case(CaseSpec("m", str(tmp_path / "case2.nrrd"), masks))
    a = sitk.GetArrayViewFromImage(lab)
    assert np.array_equal(case.labels == 1, a == 1) and np.array_equal(case.labels == 3, a == 3)
    assert not (case.labels == 2).any()


def test_split_is_by_case_and_reproducible():
    specs = [CaseSpec(f"c{i}", "", "") for i in range(10)]
    a_train, a_val = split_cases(specs, 0.3, seed=1)
    b_train, b_val = split_cases(specs, 0.3, seed=1)
    c_train, c_val = split_cases(specs, 0.3, seed=2)
    assert [s.case_id for s in a_val] == [s.case_id for s in b_val] and len(a_val) == 3
    assert {s.case_id for s in a_train} | {s.case_id for s in a_val} == {f"c{i}" for i in range(10)}
    assert not {s.case_id for s in a_train} & {s.case_id for s in a_val}
    assert [s.case_id for s in c_val] != [s.case_id for s in a_val]


def test_empty_slices_are_sampled_as_asked():
    hu = np.full((20, 64, 64), -1000.0)
    labels = np.zeros((20, 64, 64), np.uint8)
    labels[:5, 20:30, 20:30] = 1                      # 5 slices with tissue, 15 empty
    gs = to_grid_slices(hu, labels, (3.0, 3.0), 3.0, 64, (-300, 400), "x")
    none = epoch_indices(gs, 400, seed=0, epoch=0, empty_fraction=0.0)
    assert set(none) <= set(range(5))
    allowed = epoch_indices(gs, 400, seed=0, epoch=0, empty_fraction=1.0)
    assert len(set(allowed) - set(range(5))) > 5
    assert np.array_equal(allowed, epoch_indices(gs, 400, seed=0, epoch=0, empty_fraction=1.0))


def _tiny_config(out, **kw):
    base = dict(out=str(out), arch="unet", base=4, depth=2, pixel_mm=6.0, grid_pixels=64, crop=64, epochs=3,
                steps_per_epoch=3, batch_size=4, lr=3e-3, phantoms=8, val_phantoms=1, patience=10, seed=3,
                device="cpu", quiet=True, workers_threads=2)
    base.update(kw)
    return TrainConfig(**base)


def test_resumed_run_ends_with_the_same_weights(tmp_path):
    train(_tiny_config(tmp_path / "straight"))
    killed = _tiny_config(tmp_path / "resumed", stop_after_epochs=1)
    train(killed)
    assert json.loads((tmp_path / "resumed" / "config.json").read_text())["stop_after_epochs"] == 1
    train(dataclasses.replace(killed, stop_after_epochs=None))
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    model = load_model(tmp_path / "resumed" / "model")
    assert model.card.trained and model.card.training_data["phantom_slices"] == 8
    assert model.onnx_path is not None   # the CPU path's export of these weights is written too


def test_tiny_training_lowers_loss_and_raises_dice(tmp_path):
    summary = train(_tiny_config(tmp_path / "learn", base=8, epochs=6, steps_per_epoch=8, phantoms=24, lr=5e-3))
    history = summary["history"]
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    first = np.mean([history[0][f"val_{n}"] for n in ("SAT", "Muscle")])
    best = max(np.mean([h[f"val_{n}"] for n in ("SAT", "Muscle")]) for h in history)
    assert best > first + 0.1
    assert best > 0.5


def test_training_evaluate_by_hand(tmp_path, tiny_model):
    from AdiposeSegLib.running.pipeline import segment_image
    from AdiposeSegLib.tissues import SegmentOptions
    from training.evaluate import evaluate_cases, mean_row

    ct, _ = _phantom_case(tmp_path, "p", seed=9)
    pred = segment_image(ct, tiny_model, SegmentOptions(device="cpu")).labels
    ref = sitk.GetArrayFromImage(pred)
    n_sat = int((ref == 1).sum())
    assert n_sat > 20
    drop = np.argwhere(ref == 1)[:10]
    ref[tuple(drop.T)] = 0
    ref_img = sitk.GetImageFromArray(ref)
    ref_img.CopyInformation(pred)
    write_labelmap(ref_img, tmp_path / "p_labels.nii.gz")
    rows = evaluate_cases(tiny_model, read_dataset(tmp_path), SegmentOptions(device="cpu"))
    assert rows[0]["SAT_dice"] == pytest.approx(2 * (n_sat - 10) / (n_sat + n_sat - 10))
    assert rows[0]["SAT_volume_diff_pct"] == pytest.approx(100 * 10 / (n_sat - 10))
    assert mean_row(rows + rows)["SAT_dice"] == pytest.approx(rows[0]["SAT_dice"])


def test_ddp_under_torchrun_with_early_stop(tmp_path):
    """Two CPU processes (gloo) through torchrun: both ranks stop together and rank 0 exports the model."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "training", "train",
           "--out", str(out), "--base", "4", "--depth", "2", "--pixel-mm", "6", "--grid-pixels", "64", "--crop", "64",
           "--epochs", "4", "--steps", "2", "--batch-size", "4", "--phantoms", "6", "--val-phantoms", "1",
           "--device", "cpu", "--threads", "1", "--patience", "1", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("best validation score") == 1
    log = (out / "log.csv").read_text().splitlines()
    assert 2 <= len(log) - 1 < 4      # patience 1 stops at the first stale epoch, before the 4 asked for
    assert load_model(out / "model").card.trained


def test_lumbar_labels_draw_in_psoas_and_stay_clear_of_the_held_out_slab(tmp_path, real_ct_dir, tiny_model_dir):
    from training.totalseg import PSOAS_AND_BACK, prepare_full

    source = real_ct_dir / "totalsegmentator-example"
    with pytest.raises(ValueError, match="clear of the held-out slab"):
        prepare_full(source, tmp_path, "60:81", str(tiny_model_dir))
    prepare_full(source, tmp_path, "60:64", str(tiny_model_dir))
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "train" / "ts_example_full_z60-64.nii.gz")))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "train" / "ts_example_full_z60-64_labels.nii.gz")))
    full = sitk.GetArrayFromImage(sitk.ReadImage(str(source / "example_ct.nii.gz")))
    np.testing.assert_array_equal(ct, full[60:64])                # the CT's own slices, HU unchanged
    organs = sitk.GetArrayFromImage(sitk.ReadImage(str(source / "example_seg_fast_force_split.nii.gz")))[60:64]
    psoas = np.isin(organs, list(PSOAS_AND_BACK))
    in_window = psoas & (ct >= -29) & (ct <= 150)
    assert in_window.sum() > 500 and (labels[in_window] == 3).all()
    assert (labels[psoas & (ct >= -190) & (ct <= -30)] == 4).all()


def test_ignored_pixels_teach_nothing():
    """Label 255 (a semi-automatic label's "not sure"): the loss does not depend on the scores there."""
    from training.losses import IGNORE, dice_ce_loss

    torch.manual_seed(0)
    logits, target = torch.randn(2, 5, 8, 8), torch.randint(0, 5, (2, 8, 8))
    target[:, :3] = IGNORE
    changed = logits.clone()
    changed[:, :, :3] = 10 * torch.randn(2, 5, 3, 8)
    assert torch.allclose(dice_ce_loss(logits, target), dice_ce_loss(changed, target))
    assert not torch.allclose(dice_ce_loss(logits, target), dice_ce_loss(logits, torch.where(target == IGNORE, 0, target)))
    assert float(dice_ce_loss(logits, torch.full_like(target, IGNORE))) == 0.0


def test_training_labels_may_hold_ignore_but_evaluation_labels_may_not(tmp_path):
    from AdiposeSegLib.reading.labels_io import read_label_map

    array = np.zeros((2, 6, 6), np.uint8)
    array[0, :2] = 3
    array[1, :2] = 255
    path = tmp_path / "lab.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    assert sitk.GetArrayFromImage(read_label_map(path, allow_ignore=True)).max() == 255
    with pytest.raises(InputReadError, match="not AdiposeSeg labels"):
        read_label_map(path)


def test_wall_band_is_ignored_next_to_the_models_own_wall_muscle_only():
    from training.totalseg import ignore_wall_band

    labels = np.zeros((1, 20, 20), np.uint8)
    hu = np.full(labels.shape, 40.0)
    labels[0, 2:4, :] = 3                 # the labelling model's wall muscle
    labels[0, 15:17, 5:10] = 3            # a muscle drawn in from TotalSegmentator (psoas)
    drawn = np.zeros(labels.shape, bool)
    drawn[0, 15:17, 5:10] = True
    organs = np.zeros(labels.shape, bool)
    organs[0, 4:8, 10:] = True            # an organ right under the wall on the right
    hu[0, 4, 0:3] = -100                  # fat under the wall: not muscle density, kept
    out = ignore_wall_band(labels, hu, organs, drawn, px=2)
    assert (out[0, 4:6, 3:10] == 255).all()                      # 2 px under the wall, muscle density
    assert (out[0, 4, 0:3] == 0).all() and (out[0, 4:6, 10:] == 0).all()   # fat, organ: still background
    assert (out[0, 6, :] == 0).all() and (out[0, 0:2, :] == 255).all()      # 3 px away: kept; 2 px above: ignored
    assert (out[0, 13:15, 5:10] == 0).all()                      # nothing ignored around the drawn-in muscle


def test_fatty_muscle_lowers_muscle_density_only_and_relabels_its_fat_as_imat():
    from training.augment import fatty_muscle
    from AdiposeSegLib.tissues import IMAT, MUSCLE, SAT

    window, per_hu = (-300.0, 400.0), 2.0 / 700.0
    to_x = lambda hu: (hu - window[0]) * per_hu - 1  # noqa: E731
    y = torch.zeros(4, 32, 32, dtype=torch.long)
    y[:, 8:24, 8:24] = MUSCLE
    y[:, :4] = SAT
    y[:, 30:] = 255                     # not sure: left alone
    x = torch.full((4, 1, 32, 32), to_x(40.0))
    x[:, 0, :4] = to_x(-100.0)
    gen = torch.Generator().manual_seed(3)
    x2, y2 = fatty_muscle(x, y, gen, probability=1.0, hu_window=window, max_drop_hu=30.0, max_marbling=0.1)
    hu2 = (x2[:, 0] + 1) / per_hu + window[0]
    muscle = y == MUSCLE
    before = torch.where(y == SAT, -100.0, 40.0)
    assert torch.allclose(hu2[~muscle], before[~muscle], atol=1e-3)
    assert torch.equal(y2[~muscle], y[~muscle])
    still = y2 == MUSCLE
    drops = [40.0 - float(hu2[i][still[i]].max()) for i in range(4)]
    assert all(0.0 <= d <= 30.0 for d in drops) and max(drops) > 5.0
    for i in range(4):                  # one drop per slice: the muscle that stays muscle is uniform
        assert float(hu2[i][still[i]].max() - hu2[i][still[i]].min()) < 1e-3
    marbled = y2 == IMAT
    assert marbled.any() and bool(((hu2[marbled] >= -190) & (hu2[marbled] <= -30)).all())
    assert set(y2[muscle].unique().tolist()) <= {MUSCLE, IMAT}
    x3, y3 = fatty_muscle(x, y, gen, probability=0.0, hu_window=window)
    assert x3 is x and y3 is y


def test_evaluate_command_on_the_held_out_real_slab(tmp_path, example_ct_sm, example_tissue_labels):
    """`python -m training evaluate` on the held-out real slab (example_ct_sm slices 0..9 and
    TotalSegmentator's masks), with and without the visceral-fat claim: the claim only adds VAT, and
    the bundled model's muscle volume is within issue 12's 5% of TotalSegmentator's."""
    from training.__main__ import main

    ct, labels = sitk.ReadImage(str(example_ct_sm)), sitk.ReadImage(str(example_tissue_labels))
    sitk.WriteImage(ct[:, :, :10], str(tmp_path / "slab.nrrd"))
    sitk.WriteImage(labels[:, :, :10], str(tmp_path / "slab_labels.nii.gz"))
    model = Path(__file__).resolve().parents[1] / "AdiposeSeg" / "Resources" / "Models" / "adiposeseg-unet-default"
    rows = {}
    for flag in ([], ["--no-claim-visceral-fat"]):
        out = tmp_path / f"scores{len(flag)}.csv"
        assert main(["evaluate", "--model", str(model), "--data", str(tmp_path), "--merge-vat-imat", "--device", "cpu",
                     "--out", str(out)] + flag) == 0
        rows[bool(flag)] = next(r for r in csv.DictReader(out.open()) if r["case_id"] == "slab")
    claimed, alone = rows[False], rows[True]      # (merged, VAT+IMAT is scored in the VAT columns)
    assert float(claimed["VAT_volume_diff_pct"]) > float(alone["VAT_volume_diff_pct"]) + 5
    assert claimed["Muscle_dice"] == alone["Muscle_dice"] and float(alone["Muscle_dice"]) > 0.89
    assert abs(float(alone["Muscle_volume_diff_pct"])) <= 5.0


def _run_mm(labels_line: np.ndarray, tissue: set, start_after: set, spacing: float) -> float:
    """Length in mm of the first run of `tissue` labels that follows a run of `start_after` labels."""
    seen, n = False, 0
    for v in labels_line:
        if not seen:
            seen = v in start_after
        elif v in tissue:
            n += 1
        elif n:
            break
    return n * spacing


def test_phantom_wall_is_thickest_in_the_flanks_with_extraperitoneal_fat_in_front_and_marbled_fatty_muscle():
    """Issue 24 B: the wall's layer stack at realistic thickness (bulky flank obliques and transversus),
    extraperitoneal fat (VAT) thickest in front, and marbling (IMAT streaks) inside fatty muscle only."""
    from training.phantom import _round_four, _round_two, random_anatomy, render_slice
    from AdiposeSegLib.tissues import IMAT, MUSCLE, SAT, VAT

    spacing = 0.5
    a = random_anatomy(np.random.default_rng(0))
    four, two = _round_four(a), _round_two(a)
    hu, lab = render_slice(a, 1000, 1000, spacing, 0.5, np.random.default_rng(a.seed))   # below the ribs
    row = int(round((1000 - 1) / 2 + a.body_shift[1] / spacing))
    col = int(round((1000 - 1) / 2 + a.body_shift[0] / spacing))
    flank = _run_mm(lab[row, :], {MUSCLE, IMAT}, {SAT}, spacing)            # patient's right side, from outside
    front = _run_mm(lab[:, col + 60], {MUSCLE, IMAT}, {SAT}, spacing)      # 30 mm beside the midline
    assert abs(flank - a.wall * four["flank_gain"]) < 2.0, (flank, a.wall, four)
    assert abs(front - a.wall * four["rectus_gain"]) < 2.0, (front, a.wall, four)
    assert flank > 1.4 * front
    fat_front = _run_mm(lab[:, col + 60], {VAT}, {MUSCLE, IMAT}, spacing)
    assert fat_front >= two["preperitoneal_mm"] * four["preperitoneal_gain"] - 1.0 > two["preperitoneal_mm"]
    # layers: at least one fat plane (IMAT) inside the flank's wall
    assert (lab[row, :col] == IMAT).sum() >= 2

    fatty = random_anatomy(np.random.default_rng(25))
    assert _round_four(fatty)["marbling"] and _round_two(fatty)["muscle_hu_shift"] < 0
    plain = dataclasses.replace(fatty, imat_spots=0)
    hu2, lab2 = render_slice(plain, 500, 500, 1.0, 0.0, np.random.default_rng(plain.seed))
    marbled = lab2 == IMAT
    assert marbled.sum() > 200
    from scipy import ndimage
    near_sat = ndimage.binary_dilation(lab2 == SAT)
    assert not (marbled & near_sat).any()                   # streaks lie inside the muscle, never at its fascia
    assert bool(((hu2[marbled] > -190) & (hu2[marbled] < -30)).mean() > 0.8)
