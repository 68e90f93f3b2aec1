"""`evaluate` module: RMSE, CCC, PCC and SAGR for one continuous affect dimension.

Loaded by path (`evaluate.load(<this file>)`), so it imports only evaluate, datasets and numpy.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Regression metrics for valence or arousal in [-1, 1], as reported for AffectNet
(Mollahosseini et al., 2017):

- rmse: root mean squared error.
- ccc: Lin's concordance correlation coefficient,
  2 cov(x, y) / (var x + var y + (mean x - mean y)^2) with population (1/N) moments;
  1 = perfect agreement; unlike PCC it punishes shifts and scale errors.
- pcc: Pearson correlation coefficient; NaN when either side is constant.
- sagr: sign agreement, the fraction of pairs whose signs agree (zero counts as its own sign).

Pairs whose reference is NaN (unknown valence/arousal) are left out; `n` says how many were used.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): predicted values.
    references (`list[float]`): true values; NaN = unknown, that pair is ignored.
Returns:
    `dict` with `rmse`, `ccc`, `pcc`, `sagr` (floats) and `n` (int, the pairs used).
Example:
    >>> metric = evaluate.load("fer_hf/metrics/valence_arousal.py")
    >>> metric.compute(predictions=[0.5, -0.5], references=[0.5, -0.5])["ccc"]
    1.0
"""

_CITATION = """
@article{lin1989concordance,
  title={A concordance correlation coefficient to evaluate reproducibility},
  author={Lin, Lawrence I-Kuei},
  journal={Biometrics},
  volume={45},
  number={1},
  pages={255--268},
  year={1989}
}
@article{mollahosseini2017affectnet,
  title={AffectNet: A Database for Facial Expression, Valence, and Arousal Computing in the Wild},
  author={Mollahosseini, Ali and Hasani, Behzad and Mahoor, Mohammad H.},
  journal={IEEE Transactions on Affective Computing},
  year={2017}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ValenceArousal(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions, dtype=np.float64)
        references = np.asarray(references, dtype=np.float64)
        known = ~np.isnan(references)
        x, y = predictions[known], references[known]
        if x.size == 0:
            raise ValueError(
                f"All {references.size} references are NaN (unknown); valence/arousal metrics "
                "need at least one known value."
            )
        if np.isnan(x).any():
            raise ValueError(
                f"{int(np.isnan(x).sum())} predictions are NaN; expected finite values."
            )
        mean_x, mean_y = x.mean(), y.mean()
        var_x, var_y = x.var(), y.var()
        cov = ((x - mean_x) * (y - mean_y)).mean()
        ccc_denominator = var_x + var_y + (mean_x - mean_y) ** 2
        # Identical constant vectors agree perfectly; CCC's formula would give 0/0 there.
        ccc = 2 * cov / ccc_denominator if ccc_denominator > 0 else 1.0
        pcc = cov / np.sqrt(var_x * var_y) if var_x > 0 and var_y > 0 else float("nan")
        return {
            "rmse": float(np.sqrt(((x - y) ** 2).mean())),
            "ccc": float(ccc),
            "pcc": float(pcc),
            "sagr": float((np.sign(x) == np.sign(y)).mean()),
            "n": int(x.size),
        }
