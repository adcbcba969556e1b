"""AdiposeSeg in the browser: the module's workflow on Slicer's own core (trame-slicer).

The same SceneLogic as the Slicer module drives it; this package only adds the page (trame) and
the rules a server needs (data roots, upload limits, localhost by default).
"""
