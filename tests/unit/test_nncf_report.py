"""Reading NNCF's accuracy-control log (messages as NNCF 3.4 words them; a real run is in
tests/integration/test_quantize_openvino_accuracy.py)."""

from __future__ import annotations

import logging

from edged.tools.nncf_report import nncf_log, parse

START = [
    "Validation of initial model was started",
    "Metric of initial model: 0.34035078292264626",
    "Metric of quantized model: 0.3350799263833069",
    "Accuracy drop: 0.005270856539339341 (absolute)",
]


def test_no_restoration_needed_reverts_nothing() -> None:
    report = parse(START)
    assert report.metrics == {"initial": 0.34035078292264626, "quantized": 0.3350799263833069}
    assert (report.reverted, report.reverted_all, report.reached) == ([], False, True)


def test_the_closing_summary_wins_over_steps_taken_back() -> None:
    report = parse([
        *START,
        "Total number of quantized operations in the model: 60",
        "Reverted 2 operations to the floating-point precision: \n\t/a/Conv\n\t/a/Add",
        "Reverted 1 operations to the floating-point precision: \n\t/b/Conv",  # stepped back
        "Algorithm completed: achieved required accuracy drop 0.002 (absolute)",
        "2 out of 60 were reverted back to the floating-point precision:\n\t/a/Conv\n\t/a/Add",
    ])  # fmt: skip
    assert report.reverted == ["/a/Conv", "/a/Add"]
    assert report.quantized_operations == 60 and report.reached


def test_every_layer_reverted_is_the_union_of_the_steps() -> None:
    report = parse([
        *START,
        "Reverted 1 operations to the floating-point precision: \n\t/a/Conv",
        "Reverted 1 operations to the floating-point precision: \n\t/b/Conv",
        "All layers have been checked and the AccuracyAwareQuantization will not be able to "
        "achieve the required accuracy drop",
        "The algorithm could not achieve the required accuracy drop.",
    ])  # fmt: skip
    assert report.reverted == ["/a/Conv", "/b/Conv"]
    assert report.reverted_all and not report.reached


def test_the_handler_collects_only_while_the_block_runs() -> None:
    logger = logging.getLogger("nncf")
    with nncf_log() as messages:
        logger.info("Metric of initial model: 0.5")
    logger.info("Metric of quantized model: 0.4")
    assert messages == ["Metric of initial model: 0.5"]
