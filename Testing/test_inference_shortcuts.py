"""Inference shortcuts that must not change a label: classes without upsampling the scores, batch norm folded."""
import pytest
import torch
from AdiposeSegLib.model.preprocess import (
    GridMapping,
    classes_on_native,
    logits_to_native,
)


@pytest.mark.parametrize("native,spacing", [((512, 512), (0.8, 0.8)), ((333, 517), (0.7, 0.93)), ((96, 96), (2.5, 2.5)),
                                            ((60, 80), (4.0, 3.0))])
def test_equals_argmax_of_bilinear_scores(native, spacing):
    torch.manual_seed(0)
    mapping = GridMapping.for_slice(native, spacing, 2.5, 64)
    # smooth scores, like a network's (random ones would put a class boundary between every pair of pixels)
    coarse = torch.randn(3, 5, mapping.padded[0] // 8 + 1, mapping.padded[1] // 8 + 1)
    logits = torch.nn.functional.interpolate(coarse, size=mapping.padded, mode="bilinear", align_corners=False)
    logits += 0.05 * torch.randn_like(logits)
    expected = logits_to_native(logits, mapping).argmax(dim=1).to(torch.uint8)
    got = classes_on_native(logits, mapping)
    assert got.shape == expected.shape == (3, *native)
    assert (got != expected).sum() == 0


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("native,spacing", [((512, 512), (0.8, 0.8)), ((333, 517), (0.7, 0.93)), ((96, 96), (2.5, 2.5)),
                                            ((60, 80), (4.0, 3.0))])
def test_numpy_tissue_window_equals_argmax_of_bilinear_scores(native, spacing, threads):
    """The NumPy path (ONNX Runtime's) decides classes only inside the window read off the grid: the
    result, placed in a background slice, must equal the argmax of the bilinearly upsampled scores,
    with the slices decided in one thread or split over two (3 slices: uneven parts)."""
    from AdiposeSegLib.model.grid_numpy import tissue_classes
    from AdiposeSegLib.running.slice_workers import SliceWorkers

    torch.manual_seed(1)
    mapping = GridMapping.for_slice(native, spacing, 2.5, 64)
    coarse = torch.randn(3, 5, mapping.padded[0] // 8 + 1, mapping.padded[1] // 8 + 1)
    logits = torch.nn.functional.interpolate(coarse, size=mapping.padded, mode="bilinear", align_corners=False)
    logits += 0.05 * torch.randn_like(logits)
    logits[:, 0, :, : mapping.padded[1] // 3] += 10.0       # air on the left: the window must leave it out
    logits[:, 0, : mapping.padded[0] // 4] += 10.0          # and above
    expected = logits_to_native(logits, mapping).argmax(dim=1).to(torch.uint8).numpy()
    with SliceWorkers(threads) as workers:
        classes, (rows, cols) = tissue_classes(logits.numpy(), mapping, workers)
    got = torch.zeros(expected.shape, dtype=torch.uint8).numpy()
    got[:, rows, cols] = classes
    assert (got != expected).sum() == 0
    if mapping.scaled[0] <= native[0]:   # (CT pixels coarser than the model's: the whole slice is decided)
        assert cols.start > 0 and rows.start > 0


def test_channel_loop_argmax_keeps_ties_on_the_lower_class():
    import numpy as np
    from AdiposeSegLib.model.grid_numpy import _argmax

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(4, 5, 7, 9)).astype(np.float32)   # many ties
    assert np.array_equal(_argmax(scores), scores.argmax(axis=1).astype(np.uint8))


def test_batch_norm_folding_keeps_the_function(default_model, example_ct_sm):
    import SimpleITK as sitk
    from AdiposeSegLib.model.preprocess import hu_to_grid
    from AdiposeSegLib.reading.image_io import read_ct

    hu = sitk.GetArrayFromImage(read_ct(example_ct_sm))[5:9]
    card = default_model.card
    mapping = GridMapping.for_slice(hu.shape[1:], (3.0, 3.0), card.pixel_spacing_mm, card.grid_pixels)
    x = hu_to_grid(hu, mapping, card.hu_window)
    fused = default_model.inference_network()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in default_model.network.modules())  # the original is kept
    with torch.inference_mode():
        a, b = default_model.network.eval()(x), fused(x)
    assert torch.allclose(a, b, atol=1e-3, rtol=1e-4)
    assert (a.argmax(1) != b.argmax(1)).float().mean() < 1e-4


def test_folded_copy_follows_new_weights(tiny_model_dir):
    from AdiposeSegLib.model.model_card import load_model

    model = load_model(tiny_model_dir)
    x = torch.randn(1, 1, 96, 96)
    with torch.inference_mode():
        before = model.inference_network()(x)
        with torch.no_grad():
            model.network.head.bias += 1.0  # a training step, say
        model.weights_changed()
        after = model.inference_network()(x)
    assert torch.allclose(after, before + 1.0, atol=1e-5)
