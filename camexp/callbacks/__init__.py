"""Lightning callbacks, one per file, and what they share.

- `cam_metrics.CAMCallback`: per evaluation batch, the GT class's CAM from what the step returned (no second
  forward pass), the paper-rule boxes, the localization metrics (torchmetrics, synced over ranks) and the
  overlay samples; per pass, the logged numbers, `last_results`, an `EvaluationSummary` and the overlay grid.
- `score_maps.ScoreMapCallback` (`camexp evaluate`): each image's GT-class score map to the wsoleval scorer
  and .npy files, the GT mask PNGs, the best and worst localizations for the report.
- `dashboards.EvaluationDashboards`: hands CAMCallback's summary to each logger's publish function
  (`camexp.loggers`: TensorBoard figure and text, W&B media).

Shared, not duplicated:
- `batch_maps.BatchMaps`: the per-batch map cache. A batch's GT-class maps, their normalized input-size form
  and the paper-rule boxes are computed once and kept in the step's `outputs` under one key
  (`BATCH_MAPS_KEY`), which Lightning hands to every callback of that batch and drops after it.
- `overlays`: the captioned overlay sample (`OverlaySample`, drawn by `.panel()`) both callbacks collect, and
  `display_name` (class names without CUB's 'NNN.' prefix).
"""
