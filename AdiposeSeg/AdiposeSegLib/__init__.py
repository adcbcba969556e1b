"""AdiposeSeg engine: SAT / VAT / skeletal muscle segmentation and statistics on CT.

Plain Python (numpy, SimpleITK, torch); only the `scene` package (SceneLogic) touches Slicer's MRML.
"""
__version__ = "0.1.0"
