"""Lightning callbacks, one per file: CAM metrics, score-map saving, dashboards."""
