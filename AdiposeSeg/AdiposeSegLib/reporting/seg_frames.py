"""A DICOM SEG's frames written straight to bytes, so that a long series costs little.

highdicom makes one pydicom Dataset per frame (4 segments x 807 slices = 3,228 frames, ~27,000
items) and pydicom writes each of their elements through its generic writer: ~5 s for an 807-slice
scan. Here highdicom still makes the object (every module, its checks, the segments), but on a
one-plane template that holds each segment once; the frames' Per-frame Functional Groups are then
encoded from the template's items, where only the source image, the position and the dimension
index differ from frame to frame, and the pixels are bit-packed from the label array in highdicom's
frame order (segment by segment, planes along the slice normal, empty frames left out). What
depends on the number of planes (the source image references, the spacing between slices) is set as
highdicom sets it. Testing/test_dicom_seg.py holds the result to highdicom's own full construction,
element by element; the one difference is the pad byte of an odd-length bit stream, 0x00 here as
PS3.5 says (highdicom 0.28 writes "0").
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

PER_FRAME = 0x52009230          # Per-frame Functional Groups Sequence
PIXEL_DATA = 0x7FE00010
REFERENCED_SOP_CLASS = 0x00081150
REFERENCED_SOP_INSTANCE = 0x00081155
DIMENSION_INDEX_VALUES = 0x00209157
IMAGE_POSITION = 0x00200032
VARYING = (REFERENCED_SOP_CLASS, REFERENCED_SOP_INSTANCE, DIMENSION_INDEX_VALUES, IMAGE_POSITION)
LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
PACK_CHUNK = 16                  # planes compared at a time (a small reused boolean buffer)


@dataclass
class Plan:
    """Which frames the SEG holds: for each segment, the source planes (indices into the sources)
    where it is present, in frame order; and each included plane's dimension index (1-based)."""
    segments: list[int]
    planes: dict[int, list[int]]
    dimension_index: dict[int, int]
    included: list[int]            # the planes with any segment, in source order

    @property
    def frames(self) -> list[tuple[int, int]]:
        return [(segment, plane) for segment in self.segments for plane in self.planes[segment]]


def plane_sort_index(positions: np.ndarray, orientation) -> np.ndarray:
    """The planes in the order highdicom puts them: by signed distance along the volume's normal."""
    from highdicom.spatial import VOLUME_INDEX_CONVENTION, get_normal_vector

    normal = get_normal_vector(orientation, index_convention=VOLUME_INDEX_CONVENTION)
    distances = positions @ normal
    _, order = np.unique(distances, return_index=True)
    if len(order) != len(positions):
        raise ValueError("two source images lie on the same plane")
    return order


def presence(pixels: np.ndarray, segments: list[int]) -> dict[int, np.ndarray]:
    """For each segment, on which planes it has pixels."""
    present = {segment: np.zeros(len(pixels), bool) for segment in segments}
    buffer = np.empty((PACK_CHUNK,) + pixels.shape[1:], bool)
    for start in range(0, len(pixels), PACK_CHUNK):
        chunk = pixels[start:start + PACK_CHUNK]
        for segment in segments:
            mask = np.equal(chunk, segment, out=buffer[:len(chunk)])
            present[segment][start:start + len(chunk)] = mask.reshape(len(chunk), -1).any(axis=1)
    return present


def plan_frames(present: dict[int, np.ndarray], positions: np.ndarray, orientation) -> Plan:
    """present: presence() of the labels, plane k on source k."""
    segments = list(present)
    any_plane = np.logical_or.reduce([present[s] for s in segments])
    if not any_plane.any():   # nothing labelled: highdicom then keeps every frame, empty
        any_plane[:] = True
        present = {segment: any_plane for segment in segments}
    order = [int(k) for k in plane_sort_index(positions, orientation) if any_plane[k]]
    return Plan(segments=segments, planes={s: [k for k in order if present[s][k]] for s in segments},
                dimension_index={k: rank for rank, k in enumerate(order, start=1)},
                included=[int(k) for k in np.flatnonzero(any_plane)])


def pixel_length(pixels: np.ndarray, frames: list[tuple[int, int]]) -> int:
    """Bytes of the frames' bit stream, padded to an even length."""
    size = (len(frames) * pixels[0].size + 7) // 8
    return size + size % 2


def packed_frames(pixels: np.ndarray, frames: list[tuple[int, int]]):
    """The frames' binary masks as one little-endian bit stream, in chunks of bytes, padded to an even
    length (DICOM packs across frame boundaries when a frame's pixel count is not a multiple of 8: the
    odd bits carry on)."""
    buffer = np.empty((PACK_CHUNK,) + pixels.shape[1:], bool)   # reused: no fresh pages per chunk
    carry, written = np.empty(0, bool), 0
    for start in range(0, len(frames), PACK_CHUNK):
        part = frames[start:start + PACK_CHUNK]
        for i, (segment, plane) in enumerate(part):
            np.equal(pixels[plane], segment, out=buffer[i])
        bits = buffer[:len(part)].reshape(-1)
        if carry.size or bits.size % 8:
            bits = np.concatenate([carry, bits])
            whole = bits.size - bits.size % 8
            bits, carry = bits[:whole], bits[whole:]
        chunk = np.packbits(bits, bitorder="little").tobytes()
        written += len(chunk)
        yield chunk
    if carry.size:
        written += 1
        yield np.packbits(carry, bitorder="little").tobytes()
    if written % 2:
        yield b"\0"


def _header(tag: int, vr: str, length: int) -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode("ascii")
    return head + (b"\0\0" + struct.pack("<I", length) if vr in LONG_VRS else struct.pack("<H", length))


def _element(tag: int, vr: str, value: bytes) -> bytes:
    return _header(tag, vr, len(value)) + value


def _item(content: bytes) -> bytes:
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(content)) + content


def _leaf(element) -> bytes:
    """One element as pydicom writes it (explicit VR little endian)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, element)
    return fp.getvalue()


def compile_item(item) -> list:
    """A template item as parts: bytes (constant elements), (tag, vr) slots for the varying values,
    and ("SQ", tag, [items]) for sequences."""
    parts: list = []
    for element in item:
        if element.VR == "SQ":
            parts.append(("SQ", element.tag, [compile_item(sub) for sub in element.value]))
        elif element.tag in VARYING:
            parts.append((int(element.tag), element.VR))
        else:
            parts.append(_leaf(element))
    return parts


def render(parts: list, values: dict) -> bytes:
    out = []
    for part in parts:
        if isinstance(part, bytes):
            out.append(part)
        elif part[0] == "SQ":
            out.append(_element(part[1], "SQ", b"".join(_item(render(sub, values)) for sub in part[2])))
        else:
            out.append(_element(part[0], part[1], values[part[0]]))
    return b"".join(out)


def _ui(uid: str) -> bytes:
    raw = str(uid).encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def _ds(numbers) -> bytes:
    from pydicom.valuerep import DS

    raw = "\\".join(str(DS(v, auto_format=True)) for v in numbers).encode("ascii")
    return raw + b" " if len(raw) % 2 else raw


def per_frame_bytes(templates: dict[int, object], plan: Plan, sources: list) -> bytes:
    """The Per-frame Functional Groups Sequence's value: one item per frame, each the template item of
    its segment with the frame's source image, position and dimension index."""
    compiled = {segment: compile_item(item) for segment, item in templates.items()}
    uids = {}
    out = []
    for channel, segment in enumerate(plan.segments, start=1):
        for plane in plan.planes[segment]:
            if plane not in uids:
                ds = sources[plane]
                uids[plane] = (_ui(ds.SOPClassUID), _ui(ds.SOPInstanceUID), _ds(ds.ImagePositionPatient))
            sop_class, sop_instance, position = uids[plane]
            out.append(_item(render(compiled[segment], {
                REFERENCED_SOP_CLASS: sop_class, REFERENCED_SOP_INSTANCE: sop_instance, IMAGE_POSITION: position,
                DIMENSION_INDEX_VALUES: struct.pack("<2I", channel, plan.dimension_index[plane])})))
    return b"".join(out)


def fill_frames(seg, plan: Plan, sources: list, pixels: np.ndarray) -> None:
    """Turn highdicom's one-plane template `seg` (made on sources[0]) into the SEG of every plane."""
    from highdicom.spatial import get_volume_positions
    from pydicom.valuerep import DS, format_number_as_ds
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset
    from pydicom.tag import Tag

    templates = {int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber): item
                 for item in seg.PerFrameFunctionalGroupsSequence}
    if sorted(templates) != plan.segments:
        raise ValueError(f"the template holds segments {sorted(templates)}, not {plan.segments}")
    references, by_series = [], {}
    for ds in sources:      # highdicom's Source Image Sequence and Common Instance Reference, for every plane
        ref = Dataset()
        ref.ReferencedSOPClassUID = ds.SOPClassUID
        ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        references.append(ref)
        by_series.setdefault(ds.SeriesInstanceUID, []).append(ref)
    seg.SourceImageSequence = references
    series = []
    for uid, refs in by_series.items():
        item = Dataset()
        item.SeriesInstanceUID = uid
        item.ReferencedInstanceSequence = refs
        series.append(item)
    seg.ReferencedSeriesSequence = series

    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    if sources[0].get("SpacingBetweenSlices") is None:
        # highdicom computes it from every plane (the template's one plane gave it a default of 1)
        if "SpacingBetweenSlices" in measures:
            del measures.SpacingBetweenSlices
        positions = np.array([[float(DS(v, auto_format=True)) for v in ds.ImagePositionPatient] for ds in sources])
        spacing, _ = get_volume_positions(image_positions=positions,
                                          image_orientation=measures_orientation(seg))
        if spacing is not None:
            measures.SpacingBetweenSlices = format_number_as_ds(spacing)
    if "DimensionOrganizationType" in seg:
        # never "3D" with more than one segment (highdicom's rule: frames then differ by segment too)
        raise ValueError("a one-plane template with a dimension organization type")

    frames = plan.frames
    value = per_frame_bytes(templates, plan, sources)
    seg.NumberOfFrames = len(frames)
    seg[PER_FRAME] = RawDataElement(Tag(PER_FRAME), "SQ", len(value), value, 0, False, True)
    if PIXEL_DATA in seg:
        del seg[PIXEL_DATA]      # the template's; the scan's is streamed to the file by save()
    if any(tag > PER_FRAME for tag in seg.keys()) or int(seg.BitsAllocated) != 1:
        raise ValueError("the SEG has elements after its frames, or is not bit-packed, which this writer does not expect")


def save(seg, path: str, pixels: np.ndarray, plan: Plan) -> None:
    """Write a SEG whose frames fill_frames encoded: pydicom writes everything before them; the Per-frame
    Functional Groups follow as bytes (pydicom's writer would parse the raw sequence back into ~27,000
    Datasets to check their VRs, which costs more than building them), then the pixel data, packed
    and written chunk by chunk (never held whole: 107 MB for 807 slices)."""
    frames = seg.get_item(PER_FRAME)
    del seg[PER_FRAME]
    try:
        seg.save_as(path)
    finally:
        seg[PER_FRAME] = frames
    with open(path, "ab") as f:
        f.write(_header(PER_FRAME, "SQ", len(frames.value)))
        f.write(frames.value)
        f.write(_header(PIXEL_DATA, "OB", pixel_length(pixels, plan.frames)))
        for chunk in packed_frames(pixels, plan.frames):
            f.write(chunk)


def measures_orientation(seg) -> list[float]:
    return [float(v) for v in seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient]
