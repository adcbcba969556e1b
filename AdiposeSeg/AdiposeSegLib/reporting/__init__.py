"""Everything written: segmentations, tables, overlays, result sets, cohort tables."""
