"""AdiposeSeg as a DICOM node: receive CT (C-STORE), measure it with the batch path, send SEG + SR back."""
