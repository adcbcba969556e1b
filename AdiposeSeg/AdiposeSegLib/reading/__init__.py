"""Reading inputs: CT volumes and DICOM series (with their checks), label maps, orientation."""
