"""Facts about the data sources and architectures that cards cite: names, licences, BibTeX.

Static reference data only (no results live here); imports nothing from fer_hf.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSource:
    pretty_name: str
    license_name: str
    license_link: str
    terms: str  # one sentence for the card: what the licence allows
    limitation: str  # one sentence for the card: what the data's make-up implies
    bibtex: str


FER2013 = DataSource(
    pretty_name="FER2013",
    license_name="fer2013-kaggle-competition-terms",
    license_link="https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge",
    terms=(
        "FER2013 was released through Kaggle for the ICML 2013 Challenges in Representation "
        "Learning under that competition's terms and carries no open licence; check those terms "
        "before any use beyond research."
    ),
    limitation=(
        "FER2013 holds 48x48 grayscale faces found by web image search, with noisy labels: "
        "human accuracy on it is about 65% (Goodfellow et al., 2013), so its labels cap and blur "
        "what any model trained on it can learn."
    ),
    bibtex="""@inproceedings{goodfellow2013challenges,
  title     = {Challenges in Representation Learning: A Report on Three Machine Learning Contests},
  author    = {Goodfellow, Ian J. and Erhan, Dumitru and Carrier, Pierre Luc and Courville, Aaron
               and Mirza, Mehdi and Hamner, Ben and Cukierski, Will and Tang, Yichuan and others},
  booktitle = {Neural Information Processing (ICONIP)},
  series    = {Lecture Notes in Computer Science},
  volume    = {8228},
  pages     = {117--124},
  year      = {2013}
}""",
)

AFFECTNET = DataSource(
    pretty_name="AffectNet",
    license_name="affectnet-research-only",
    license_link="http://mohammadmahoor.com/affectnet/",
    terms=(
        "AffectNet is distributed under a research-only licence agreement: weights trained on it "
        "inherit that restriction and may not be used commercially."
    ),
    limitation=(
        "AffectNet's faces come from web image search, and most were labelled by a single "
        "annotator; its classes are heavily imbalanced (happy and neutral dominate, contempt and "
        "disgust are rare), so rare classes are the least reliable."
    ),
    bibtex="""@article{mollahosseini2019affectnet,
  title   = {AffectNet: A Database for Facial Expression, Valence, and Arousal Computing
             in the Wild},
  author  = {Mollahosseini, Ali and Hasani, Behzad and Mahoor, Mohammad H.},
  journal = {IEEE Transactions on Affective Computing},
  volume  = {10},
  number  = {1},
  pages   = {18--31},
  year    = {2019}
}""",
)


def data_source(name: str | None) -> DataSource | None:
    """The known source a dataset name refers to ("fer2013", "AffectNet-8", ...), or None."""
    key = "".join(ch for ch in (name or "").lower() if ch.isalnum())
    if "affectnet" in key:
        return AFFECTNET
    if "fer2013" in key:
        return FER2013
    return None


# Backbone `model_type` -> (what it is, BibTeX of the papers it implements).
ARCHITECTURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "resnet": (
        "a ResNet backbone (transformers' `ResNetModel`)",
        (
            """@inproceedings{he2016deep,
  title     = {Deep Residual Learning for Image Recognition},
  author    = {He, Kaiming and Zhang, Xiangyu and Ren, Shaoqing and Sun, Jian},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {770--778},
  year      = {2016}
}""",
        ),
    ),
    "vit": (
        "a Vision Transformer backbone (transformers' `ViTModel`)",
        (
            """@inproceedings{dosovitskiy2021image,
  title     = {An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale},
  author    = {Dosovitskiy, Alexey and Beyer, Lucas and Kolesnikov, Alexander and
               Weissenborn, Dirk and Zhai, Xiaohua and Unterthiner, Thomas and Dehghani, Mostafa
               and Minderer, Matthias and Heigold, Georg and Gelly, Sylvain and Uszkoreit, Jakob
               and Houlsby, Neil},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2021}
}""",
        ),
    ),
    "fer_factorized": (
        "fer-hf's factorized-convolution CNN (depthwise-separable and k x 1 / 1 x k convolutions "
        "in inverted residual blocks with optional squeeze-excitation)",
        (
            """@article{howard2017mobilenets,
  title   = {MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications},
  author  = {Howard, Andrew G. and Zhu, Menglong and Chen, Bo and Kalenichenko, Dmitry and Wang,
             Weijun and Weyand, Tobias and Andreetto, Marco and Adam, Hartwig},
  journal = {arXiv preprint arXiv:1704.04861},
  year    = {2017}
}""",
            """@inproceedings{szegedy2016rethinking,
  title     = {Rethinking the Inception Architecture for Computer Vision},
  author    = {Szegedy, Christian and Vanhoucke, Vincent and Ioffe, Sergey and Shlens, Jon and
               Wojna, Zbigniew},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {2818--2826},
  year      = {2016}
}""",
            """@inproceedings{sandler2018mobilenetv2,
  title     = {MobileNetV2: Inverted Residuals and Linear Bottlenecks},
  author    = {Sandler, Mark and Howard, Andrew and Zhu, Menglong and Zhmoginov, Andrey and
               Chen, Liang-Chieh},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {4510--4520},
  year      = {2018}
}""",
            """@inproceedings{hu2018squeeze,
  title     = {Squeeze-and-Excitation Networks},
  author    = {Hu, Jie and Shen, Li and Sun, Gang},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {7132--7141},
  year      = {2018}
}""",
        ),
    ),
}
