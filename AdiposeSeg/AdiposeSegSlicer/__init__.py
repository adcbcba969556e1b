"""What the Slicer module needs from the running application (settings, PyTorch, layouts, the DICOM
database), kept out of AdiposeSeg.py so the module file holds the Qt widget only: the module's Logic
(the console API), its parameter node and its self-test (run inside Slicer). Never imported by the
engine, the browser app or the tests outside Slicer except for static checks."""
