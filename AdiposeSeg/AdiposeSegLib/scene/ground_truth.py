"""Saving a (corrected) case into a ground-truth dataset, as a unit, never overwriting."""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import SimpleITK as sitk


from ..errors import AdiposeSegError
from ..reporting.manifest import MANIFEST, manifest_text, read_manifest
from ..reporting.publish import publish, staging_folder
from ..reporting.safe_write import atomic_path, write_text
from ..running.identity import safe_name
from ..reporting.writers import write_segmentation
from .levels import (levels_of)
from .volumes import (image_from_volume_node)



class GroundTruthMixin:
    # -- ground truth
    def saveAsGroundTruth(self, volumeNode, segmentationNode, datasetDir, caseId: str | None = None, source: str = ""):
        """Write CT, edited segmentation, the unedited prediction and a manifest line into a dataset folder.

        Checked before anything is written: the segmentation belongs to this volume and lies on its
        grid. A case is written as a unit (all its files and the manifest line, or nothing), and
        nothing is ever overwritten: a case id already in use gets a numbered suffix. Returns the
        manifest row.
        """
        self.checkBelongs(volumeNode, segmentationNode)
        image = image_from_volume_node(volumeNode)
        labels_array, ignored = self.labelsFromSegmentation(segmentationNode, volumeNode)
        if labels_array.shape != sitk.GetArrayViewFromImage(image).shape:
            raise AdiposeSegError(f"{segmentationNode.GetName()} does not lie on the grid of {volumeNode.GetName()}")
        labels = sitk.GetImageFromArray(labels_array)
        labels.CopyInformation(image)
        prediction = self.predictionArray(segmentationNode)
        if prediction is not None and prediction.shape != labels_array.shape:
            prediction = None  # a prediction of another grid says nothing about this case's edits

        dataset = Path(datasetDir)
        dataset.mkdir(parents=True, exist_ok=True)
        manifest = dataset / MANIFEST
        rows = read_manifest(manifest)
        base = safe_name(caseId or volumeNode.GetName())
        used = {r["case_id"] for r in rows}
        case_id, n = base, 1
        while case_id in used or any((dataset / sub / f"{case_id}{ext}").exists()
                                     for sub, ext in (("images", ".nrrd"), ("labels", ".seg.nrrd"),
                                                      ("predictions", "_prediction.seg.nrrd"))):
            n += 1
            case_id = f"{base}_{n}"
        row = {"case_id": case_id, "image": f"images/{case_id}.nrrd", "segmentation": f"labels/{case_id}.seg.nrrd",
               "prediction": "", "source": source or volumeNode.GetName(),
               "model_version": segmentationNode.GetAttribute("AdiposeSeg.ModelVersion") or "",
               "edited": "unknown", "date": datetime.datetime.now().isoformat(timespec="seconds")}
        l3 = levels_of(segmentationNode).get("L3")
        if l3:
            row.update(l3_slice=str(l3["slice"]), l3_source=l3["source"])
        if prediction is not None:
            row["prediction"] = f"predictions/{case_id}_prediction.seg.nrrd"
            row["edited"] = "yes" if not np.array_equal(prediction, labels_array) else "no"
        with staging_folder(dataset) as staging:
            staged = {}
            with atomic_path(staging / "image.nrrd") as tmp:
                sitk.WriteImage(image, str(tmp), useCompression=True)
            staged[row["image"]] = staging / "image.nrrd"
            staged[row["segmentation"]] = write_segmentation(labels, staging / "labels.seg.nrrd")
            if prediction is not None:
                pred = sitk.GetImageFromArray(prediction)
                pred.CopyInformation(image)
                staged[row["prediction"]] = write_segmentation(pred, staging / "prediction.seg.nrrd")
            staged[MANIFEST] = write_text(staging / MANIFEST, manifest_text(rows + [row]))
            # the manifest goes last and replaces its earlier version; the case's own files never replace anything
            publish(staged, dataset, marker=MANIFEST, overwrite=False, marker_replaces=True)
        if ignored:
            row["ignored_segments"] = ignored
        return row


