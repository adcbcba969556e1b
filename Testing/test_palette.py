"""The tissue colours a reader must tell apart at a glance (issue 26): muscle far from every other
tissue, in normal vision and in simulated red-green colour blindness (Machado et al. 2009, severity 1).
SAT red and VAT green are the seeds' convention and stay; their closeness under deuteranopia is known."""
import itertools

import numpy as np
import pytest

from AdiposeSegLib.tissues import COLORS, IMAT, MUSCLE, NAMES, SAT, VAT

SIMULATION = {
    "normal": np.eye(3),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]]),
}


def _seen(rgb, matrix):
    c = np.array(rgb) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    out = np.clip(matrix @ linear, 0, 1)
    return 255 * np.where(out <= 0.0031308, 12.92 * out, 1.055 * out ** (1 / 2.4) - 0.055)


@pytest.mark.parametrize("vision", list(SIMULATION))
def test_muscle_stands_apart_from_every_other_tissue(vision):
    seen = {k: _seen(COLORS[k], SIMULATION[vision]) for k in (SAT, VAT, MUSCLE, IMAT)}
    for other in (SAT, VAT, IMAT):
        assert np.linalg.norm(seen[MUSCLE] - seen[other]) > 150, (vision, NAMES[other])


def test_every_pair_differs_in_normal_vision():
    for a, b in itertools.combinations((SAT, VAT, MUSCLE, IMAT), 2):
        assert np.linalg.norm(np.subtract(COLORS[a], COLORS[b])) > 150, (NAMES[a], NAMES[b])
