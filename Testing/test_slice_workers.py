"""Slices split over threads: every slice once, in order, errors passed on."""
import numpy as np
import pytest

from AdiposeSegLib.running.slice_workers import SliceWorkers, slice_chunks


@pytest.mark.parametrize("n,parts", [(8, 2), (7, 3), (1, 4), (3, 8), (16, 1)])
def test_chunks_cover_every_slice_once_in_order(n, parts):
    chunks = slice_chunks(n, parts)
    assert len(chunks) == min(n, parts)
    assert [i for c in chunks for i in range(c.start, c.stop)] == list(range(n))
    sizes = [c.stop - c.start for c in chunks]
    assert max(sizes) - min(sizes) <= 1


def test_map_returns_parts_in_slice_order_and_raises_a_parts_error():
    data = np.arange(10 * 4).reshape(10, 4)
    with SliceWorkers(3) as workers:
        parts = workers.map(lambda part: data[part].sum(axis=1), 10)
        assert np.array_equal(np.concatenate(parts), data.sum(axis=1))

        def fails(part):
            if part.start > 0:
                raise ValueError("slice trouble")
            return part

        with pytest.raises(ValueError, match="slice trouble"):
            workers.map(fails, 10)
