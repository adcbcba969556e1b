"""HU gating and island removal on hand-made slices."""
import numpy as np

from AdiposeSegLib.measuring.postprocess import gate, remove_islands
from AdiposeSegLib.tissues import HUWindows


def test_gate_windows_and_imat():
    classes = np.zeros((1, 8, 12), np.uint8)
    hu = np.full(classes.shape, 40.0)
    classes[0, :, :4] = 1            # network says SAT
    hu[0, :, :4] = -100              # fat
    hu[0, 0, 0] = 20                 # but this voxel is soft tissue: not SAT
    classes[0, :, 4:] = 3            # network says muscle
    hu[0, 3:5, 8:10] = -90           # fat patch inside muscle, away from SAT: IMAT
    hu[0, 6, 4] = -80                # fat voxel in "muscle" touching SAT: partial volume, joins SAT
    hu[0, 0, 11] = 300               # bone-dense voxel in muscle: not muscle
    out = gate(classes, hu, HUWindows())
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 1
    assert (out[0, 3:5, 8:10] == 4).all()
    assert out[0, 6, 4] == 1
    assert out[0, 0, 11] == 0
    assert out[0, 1, 6] == 3
    no_imat = gate(classes, hu, HUWindows(), include_imat=False)
    assert (no_imat[0, 3:5, 8:10] == 0).all()


def test_custom_windows():
    classes = np.full((1, 2, 2), 3, np.uint8)
    hu = np.array([[[0.0, 100.0], [160.0, 200.0]]])
    out = gate(classes, hu, HUWindows(muscle=(-29, 170)))
    assert out.tolist() == [[[3, 3], [3, 0]]]


def test_remove_islands_by_area():
    labels = np.zeros((2, 20, 20), np.uint8)
    labels[0, 1:3, 1:3] = 1      # 4 px = 4 mm² at 1 mm: removed at 10 mm²
    labels[0, 10:14, 10:14] = 1  # 16 px: kept
    labels[1, 5, 5] = 2          # single voxel on the next slice: removed
    labels[1, 0:4, 0:4] = 1      # 16 px: kept, even though slice 0 has a small island above it
    out = remove_islands(labels, pixel_area_mm2=1.0, min_area_mm2=10.0)
    assert out[0, 1:3, 1:3].sum() == 0
    assert (out[0, 10:14, 10:14] == 1).all()
    assert out[1, 5, 5] == 0 and (out[1, 0:4, 0:4] == 1).all()


def test_imat_is_never_an_island_but_other_specks_are():
    """Every fat-range pixel within the muscle is IMAT, a single one included; the pipeline's island
    removal clears specks of SAT, VAT and muscle only."""
    from AdiposeSegLib.tissues import IMAT, MUSCLE, SAT, VAT

    classes = np.zeros((1, 40, 40), np.uint8)
    hu = np.full(classes.shape, 40.0)
    classes[0, 5:30, 5:30] = MUSCLE
    hu[0, 10, 10] = hu[0, 20:22, 20:22] = -100.0       # IMAT: 1 and 4 pixels of fat inside the muscle
    classes[0, 35, 35] = SAT                            # a one-pixel SAT speck outside
    hu[0, 35, 35] = -100.0
    classes[0, 35, 5] = VAT
    hu[0, 35, 5] = -80.0
    area = 0.8 * 0.8                                    # 10 mm² = 16 pixels
    out = remove_islands(gate(classes, hu, HUWindows()), area, 10.0, which=(SAT, VAT, MUSCLE))
    assert out[0, 10, 10] == IMAT and (out[0, 20:22, 20:22] == IMAT).all() and (out == IMAT).sum() == 5
    assert out[0, 35, 35] == 0 and out[0, 35, 5] == 0
    assert (out == MUSCLE).sum() == 25 * 25 - 5


def test_unlabelled_fat_next_to_vat_is_claimed_as_vat():
    """claim_visceral_fat: a patch of unlabelled fat-range pixels joins VAT when it touches VAT and not
    SAT and is at most 200 mm², except its pixels within 2 of gas; every other patch stays unlabelled."""
    from AdiposeSegLib.measuring.postprocess import claim_visceral_fat

    labels = np.zeros((1, 60, 60), np.uint8)
    hu = np.full(labels.shape, 40.0)                 # soft tissue
    labels[0, 10:30, 10:30] = 2                      # VAT, fat
    hu[0, 10:30, 10:30] = -100
    hu[0, 30:32, 10:30] = -90                        # a rim below it, unlabelled: claimed (40 px)
    hu[0, 12:16, 30:34] = -80                        # a patch beside it touching SAT too: left
    labels[0, 12:16, 34:38] = 1
    hu[0, 12:16, 34:38] = -100
    hu[0, 20:24, 30:33] = -80                        # a patch beside VAT next to gas: its 2 px next to gas left
    hu[0, 20:24, 33] = -800
    hu[0, 40:45, 40:45] = -100                       # fat touching nothing: left
    hu[0, 10:30, 5:10] = -120                        # a large patch beside VAT (100 px at 4 mm2 = 400 mm2): left
    out = claim_visceral_fat(labels, hu, HUWindows(), pixel_area_mm2=1.0)
    assert (out[0, 30:32, 10:30] == 2).all()
    assert (out[0, 12:16, 30:34] == 0).all()
    assert (out[0, 20:24, 31:33] == 0).all() and (out[0, 20:24, 30] == 2).all()
    assert (out[0, 40:45, 40:45] == 0).all()
    assert (out[0, 10:30, 5:10] == 2).all()          # 100 mm² at 1 mm pixels: claimed
    big = claim_visceral_fat(labels, hu, HUWindows(), pixel_area_mm2=4.0)
    assert (big[0, 10:30, 5:10] == 0).all() and (big[0, 30:32, 10:30] == 2).all()
    assert (out[labels != 0] == labels[labels != 0]).all()    # labelled pixels are never changed


def test_only_fat_the_network_called_background_is_claimed():
    """Fat the gate or the island removal cleared (a small SAT island, IMAT when not wanted) is never
    made VAT: the pipeline passes the network's own background."""
    from AdiposeSegLib.measuring.postprocess import claim_visceral_fat

    labels = np.zeros((1, 30, 30), np.uint8)
    hu = np.full(labels.shape, 40.0)
    labels[0, 5:20, 5:20] = 2
    hu[0, 5:20, 5:20] = -100
    hu[0, 20:22, 5:20] = -100          # a rim below VAT: the network said background
    hu[0, 5:8, 20:22] = -100           # beside VAT: the network said SAT (a removed island)
    network_background = np.ones(labels.shape, bool)
    network_background[0, 5:8, 20:22] = False
    out = claim_visceral_fat(labels, hu, HUWindows(), 1.0, network_background=network_background)
    assert (out[0, 20:22, 5:20] == 2).all() and (out[0, 5:8, 20:22] == 0).all()
    assert (claim_visceral_fat(labels, hu, HUWindows(), 1.0)[0, 5:8, 20:22] == 2).all()


def test_muscle_rim_the_network_called_sat_joins_the_muscle():
    """muscle_rim: muscle-range voxels the network called SAT, connected to the muscle within 2.5 mm
    (at least one pixel), are muscle; those it called background (an organ against the muscle) or
    VAT, and SAT-called ones farther out (a septum in the SAT), stay unlabelled; nothing else changes."""
    from AdiposeSegLib.measuring.postprocess import muscle_rim
    from AdiposeSegLib.tissues import MUSCLE, SAT, VAT

    classes = np.zeros((1, 30, 40), np.uint8)
    hu = np.full(classes.shape, 40.0)
    classes[0, :, 10:20] = MUSCLE
    classes[0, :, 20:30] = SAT
    hu[0, :, 20:30] = -100
    hu[0, 0:10, 20:24] = -10            # the muscle's rim, called SAT: 4 pixels wide
    hu[0, 12, 20:30] = 10               # a septum across the SAT, touching the muscle
    classes[0, 15:20, 0:10] = VAT       # muscle-range voxels called VAT next to the muscle
    labels = gate(classes, hu, HUWindows())
    assert (labels[0, 0:10, 20:24] == 0).all() and (labels[0, :, 10:20] == MUSCLE).all()

    fine = muscle_rim(labels, classes, hu, HUWindows(), pixel_mm=1.25)       # 2.5 mm = 2 pixels
    assert (fine[0, 0:10, 20:22] == MUSCLE).all() and (fine[0, 0:10, 22:24] == 0).all()
    assert (fine[0, 12, 20:22] == MUSCLE).all() and (fine[0, 12, 22:30] == 0).all()
    assert (fine[0, :, 0:10] == 0).all()                                      # background and VAT-called: never
    changed = fine != labels
    assert changed.sum() == 10 * 2 + 2 and (labels[changed] == 0).all()

    coarse = muscle_rim(labels, classes, hu, HUWindows(), pixel_mm=3.0)      # 2.5 mm < 1 pixel: one pixel
    assert (coarse[0, 0:10, 20] == MUSCLE).all() and (coarse[0, 0:10, 21:24] == 0).all()
    assert (coarse[0, 12, 20] == MUSCLE).all() and (coarse[0, 12, 21:] == 0).all()


def test_sat_rim_the_network_called_background_joins_the_sat():
    """sat_rim: fat-range voxels the network called background, connected to SAT within 2.5 mm (at
    least one pixel), are SAT; voxels next to air, voxels the network called something else (an island
    the pipeline cleared) and voxels farther from SAT stay unlabelled; nothing else changes."""
    from AdiposeSegLib.measuring.postprocess import sat_rim
    from AdiposeSegLib.tissues import BACKGROUND, SAT, VAT

    classes = np.zeros((1, 20, 30), np.uint8)
    hu = np.full(classes.shape, -1000.0)           # air at columns 0..3
    hu[0, :, 4] = 60                               # skin
    hu[0, :, 5:9] = -70                            # the SAT's outer rim, called background: 4 pixels
    hu[0, :, 9:] = -100
    classes[0, :, 9:] = SAT
    hu[0, 17:20, :7] = -1000                       # a notch of air down to column 6
    classes[0, 0:3, 5:9] = VAT                     # the network said VAT here (an island the pipeline cleared)
    labels = gate(classes, hu, HUWindows())
    labels[0, 0:3, 5:9] = BACKGROUND
    assert (labels[0, :, 9:] == SAT).all() and (labels[0, :, :9] == BACKGROUND).all()

    fine = sat_rim(labels, classes, hu, HUWindows(), pixel_mm=1.25)          # 2.5 mm = 2 pixels
    assert (fine[0, 3:, 8] == SAT).all() and (fine[0, 3:17, 7] == SAT).all()
    assert (fine[0, 17:, 7] == BACKGROUND).all()                             # next to the air
    assert (fine[0, :, 5:7] == BACKGROUND).all()                             # beyond 2.5 mm
    assert (fine[0, 0:3, 5:9] == BACKGROUND).all()                           # the network did not say background
    changed = fine != labels
    assert changed.sum() == 17 + 14 and (labels[changed] == BACKGROUND).all()

    coarse = sat_rim(labels, classes, hu, HUWindows(), pixel_mm=3.0)         # one pixel
    assert (coarse[0, 3:, 8] == SAT).all() and (coarse[0, :, 5:8] == BACKGROUND).all()
