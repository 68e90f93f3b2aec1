"""`evaluate` module: accuracy, balanced accuracy, macro-F1, per-class recall, confusion matrix.

Loaded by path (`evaluate.load(<this file>)`), so it imports only evaluate, datasets and numpy.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Single-label classification metrics for facial expressions, all from one confusion matrix
(rows = true class, columns = predicted class):

- accuracy: correct / total.
- balanced_accuracy: mean recall over the classes present in the references (as scikit-learn's
  `balanced_accuracy_score`), so a model that ignores a rare class is not hidden by the big ones.
- macro_f1: unweighted mean F1 over the classes present in the references or the predictions
  (as scikit-learn's `f1_score(average="macro")`); a class that is never predicted scores F1 = 0.
- per_class_recall: recall of every class 0..num_labels-1; NaN for a class with no reference.
- confusion_matrix: counts, shape (num_labels, num_labels).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class indices.
    references (`list[int]`): true class indices.
    num_labels (`int`, optional): number of classes; default: 1 + the largest index seen.
Returns:
    `dict` with `accuracy`, `balanced_accuracy`, `macro_f1` (floats), `per_class_recall`
    (list of floats, NaN where a class has no reference) and `confusion_matrix` (list of lists).
Example:
    >>> metric = evaluate.load("fer_hf/metrics/expression_classification.py")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])["balanced_accuracy"]
    0.75
"""

_CITATION = """
@article{brodersen2010balanced,
  title={The balanced accuracy and its posterior distribution},
  author={Brodersen, Kay H. and Ong, Cheng Soon and Stephan, Klaas E. and Buhmann, Joachim M.},
  journal={20th International Conference on Pattern Recognition},
  year={2010}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExpressionClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, num_labels=None):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if references.size == 0:
            raise ValueError("No references given; the metric needs at least one example.")
        seen = int(max(predictions.max(), references.max())) + 1
        if num_labels is None:
            num_labels = seen
        if min(predictions.min(), references.min()) < 0 or seen > num_labels:
            raise ValueError(
                f"Class indices must lie in [0, {num_labels - 1}] for num_labels={num_labels}, "
                f"got indices from {min(predictions.min(), references.min())} to {seen - 1}."
            )
        matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
        np.add.at(matrix, (references, predictions), 1)

        true_counts = matrix.sum(axis=1)  # per true class
        pred_counts = matrix.sum(axis=0)  # per predicted class
        correct = np.diag(matrix)
        with np.errstate(divide="ignore", invalid="ignore"):
            recall = np.where(true_counts > 0, correct / true_counts, np.nan)
            precision = np.where(pred_counts > 0, correct / pred_counts, 0.0)
            f1 = np.where(
                precision + np.nan_to_num(recall) > 0,
                2 * precision * np.nan_to_num(recall) / (precision + np.nan_to_num(recall)),
                0.0,
            )
        present = true_counts > 0
        in_either = present | (pred_counts > 0)
        return {
            "accuracy": float(correct.sum() / references.size),
            "balanced_accuracy": float(recall[present].mean()),
            "macro_f1": float(f1[in_either].mean()),
            "per_class_recall": [float(r) for r in recall],
            "confusion_matrix": matrix.tolist(),
        }
