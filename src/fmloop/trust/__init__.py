"""Trust checks every model gets before it is promoted: explanations and their faithfulness
(explain, faithfulness), behaviour under perturbed inputs (robustness), quality across groups of
inputs (slices), and their pages in the evaluation report (report).

    explain       word attributions (captum layer integrated gradients on the input embeddings;
                  leave-one-word-out ablation for models without gradients) and pixel attributions
    faithfulness  deleting the most-attributed words against deleting random ones
    robustness    text and image perturbations: accuracy under each, and how often answers hold
    slices        per-slice metrics with intervals (fairlearn's MetricFrame), worst slice, gap
    report        the report sections and the numbers the gate reads

Calibration (temperature scaling) lives with the models it changes: fmloop.models.calibration.
"""
