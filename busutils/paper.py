"""What Hijab et al. (2019) state, as data, so the book can show it next to its own settings.

Every setting of a profile (:mod:`busutils.profiles`) has a :class:`Statement` in
:data:`SETTINGS`: the paper's words (a few, quoted) and their section, or ``None`` where the
paper is silent, the paper's value in the profile's terms, and a note.  :data:`FACTS` holds
what the paper reports that is not a setting (data, hardware, software, timings) and
:data:`TABLE1` its Table 1.

:func:`side_by_side` reads the settings from the profile objects it is given, so the page it
renders cannot drift from the code; :func:`leak_arithmetic` asks which test-set sizes can
produce the accuracies of Table 1, and :data:`LEAK_EVIDENCE` sets out what speaks for and
against the reading in which Table 1 was measured on a leaking split.  The book's wording of
that question, everywhere, is :data:`LEAK_VERDICT`: the text read as written describes a leak,
and the evidence cannot tell whether Table 1 was measured that way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal

import numpy as np
import pandas as pd

from .profiles import Profile

__all__ = [
    "FACTS",
    "LEAK_EVIDENCE",
    "LEAK_VERDICT",
    "PROFILE_FIELDS",
    "SECTIONS",
    "SETTINGS",
    "TABLE1",
    "UNSTATED",
    "VERDICTS",
    "Fact",
    "Statement",
    "facts_table",
    "leak_arithmetic",
    "leak_evidence",
    "side_by_side",
    "table1",
    "verdict",
]

#: The settings of a profile, in the order the book shows them (read from the code: a setting
#: added to :class:`busutils.profiles.Profile` without a statement here fails the tests).
PROFILE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Profile))

#: Where a statement can come from: the abstract or a section of the paper.
SECTIONS = ("Abstract", "I", "III", "III.A", "III.B", "III.C", "III.D", "IV", "IV/Table 1", "V")

#: How a profile's value relates to the paper (see :func:`verdict`).
VERDICTS = ("follows", "follows in part", "follows one reading", "departs", "fills a silence", "book only")


class _Unstated:
    """The paper gives no value for this setting."""

    def __repr__(self) -> str:
        return "UNSTATED"


UNSTATED = _Unstated()


@dataclass(frozen=True)
class Statement:
    """What the paper says about one setting.

    ``says`` quotes the paper (``None`` where it is silent) and ``section`` says where.
    ``value`` is the paper's value in the profile's terms, or :data:`UNSTATED`.
    ``ambiguous``: the words allow more than one reading and ``value`` is one of them.
    ``book_adds``: what a profile with ``value`` does that the paper does not state (its
    strengths, its order of steps...); a profile that follows the paper only in part is
    marked so, never as following it.
    ``book_only``: the setting belongs to the book's machinery, outside what a paper reports.
    """

    says: str | None
    section: str | None
    note: str
    value: object = UNSTATED
    ambiguous: bool = False
    book_adds: str = ""
    book_only: bool = False

    def __post_init__(self) -> None:
        if (self.says is None) != (self.section is None):
            raise ValueError(f"a quote needs its section and a section its quote: {self.says!r}, {self.section!r}")
        if self.section is not None and self.section not in SECTIONS:
            raise ValueError(f"section {self.section!r} is not one of {SECTIONS}")
        if self.says is None and self.value is not UNSTATED:
            raise ValueError(f"a value ({self.value!r}) needs the paper's words that state it")
        if self.book_adds and self.value is UNSTATED:
            raise ValueError("book_adds names what the book adds to a value the paper states: give the value")


@dataclass(frozen=True)
class Fact:
    """Something the paper reports that is not a setting; ``says`` is ``None`` for a silence."""

    value: object
    says: str | None
    section: str | None
    note: str = ""


_CHOLLET = "Chollet's 2016 Keras blog recipe"

SETTINGS: dict[str, Statement] = {
    "name": Statement(None, None, "The profile's name.", book_only=True),
    "image_size": Statement(
        None, None,
        "The paper gives the size of its JPEG files (960×720 pixels, III.A) but not the size fed to the "
        "networks. 224×224 is VGG16's ImageNet input size: the book's choice.",
    ),
    "test_size": Statement(
        "divided into a 1,000-image training set (650 benign and 350 malignant), and a 300-image test set",
        "III.A",
        "The paper's images were split 1,000/300: a test part of 300 of 1,300, about 23%. Its '70% for "
        "training, and 30% for testing' (III.A) is said of the 21,600 augmented copies, not of the images. "
        "The book holds out 30% of the images, by duplicate group, before any augmentation: its own choice, "
        "the proportion of the paper's split of copies applied to images.",
        value=300 / 1300,
    ),
    "val_size": Statement(
        None, None,
        "The paper mentions no validation part: its split has a training and a testing portion only.",
    ),
    "balance_classes": Statement(
        "reduce class imbalance", "III.A",
        "The paper names augmentation as its way of reducing class imbalance, without saying how (copying "
        "every image 24 times leaves the ratio unchanged). It does not mention class weights.",
    ),
    "batch_size": Statement(
        "a batch size of 20", "III",
        "Stated with the baseline's settings; the paper gives no batch size for the VGG16 models, so "
        "using 20 for them too is a reading.",
        value=20, ambiguous=True,
    ),
    "augmentation": Statement(
        "rotation (90°, 180°, 270°), width shift, height shift, rescaling, shearing, zooming, horizontal "
        "flipping, and filling", "III.A",
        "The list only: no shift, shear or zoom ranges and no fill mode. 'Rescaling' is most likely pixel "
        "scaling (Keras' ImageDataGenerator rescale, as in " + _CHOLLET + "), not a geometric change. "
        "The 'paper' augmentation uses the listed transformations with the book's strengths, and applies "
        "them after the split, to training images only, where the paper's text augments the whole data set "
        "first.",
        value="paper", book_adds="the strengths of every transformation; augmenting after the split",
    ),
    "augment_copies": Statement(
        "increase the size of our data by 24 times to reach 21,600 images", "III.A",
        "The paper's copies were made of its data before they were divided 70/30 (III.A). The 'paper' "
        "profile makes 24 copies (the original and 23 augmented) of each training image only, after the "
        "split; the VGG16 models read them, while the baseline is augmented anew at every batch. 21,600 = "
        "24 × 900, which matches neither the 1,000 training images nor the 1,300 collected.",
        value=24, book_adds="copies of the training images only, made after the split",
    ),
    "baseline_epochs": Statement(
        "50 epochs", "III",
        "For the baseline network trained from scratch. In the book an epoch of the baseline shows each "
        "training image once, augmented afresh; an epoch of the classifier on VGG16 features and an epoch "
        "of fine-tuning count differently (see head_epochs and finetune_epochs).",
        value=50,
    ),
    "baseline_learning_rate": Statement(
        "a learning rate of 0.001", "III", "For the baseline network trained from scratch.", value=0.001,
    ),
    "baseline_optimizer": Statement(
        None, None,
        "No optimizer is named for the baseline; the only one the paper names is SGD, for fine-tuning "
        "(III.C).",
    ),
    "dropout": Statement(
        "reduced by the drop-out layers", "III.A",
        "The paper uses dropout layers but gives no rate and does not say where they sit.",
    ),
    "l2": Statement(None, None, "No weight decay is mentioned."),
    "patience": Statement(None, None, "No early stopping is mentioned (and no validation part to stop on)."),
    "restore_best": Statement(
        None, None,
        "No choice of a best epoch is mentioned; Figures 2–4 show accuracy over training. The 'paper' "
        "profile runs all 50 epochs but then keeps the weights of its best validation epoch: the book's "
        "choice.",
    ),
    "reduce_lr_patience": Statement(
        None, None,
        "The paper gives one learning rate (0.001, for the baseline) and no schedule; that it stayed "
        "constant is not stated either.",
    ),
    "head_epochs": Statement(
        "Classifier training was carried on with 50 iterations", "III.C",
        "'Iterations' need not be epochs, and the sentence (in the section on fine-tuning) may describe "
        "the classifier trained on saved features or the fine-tuning itself. Nothing is said of the "
        "transfer model's training (III.B). In the book an epoch of this classifier reads the features of "
        "every copy of every training image: in the 'paper' profile 24 times as many items as an epoch "
        "of the baseline.",
        value=50, ambiguous=True,
    ),
    "head_learning_rate": Statement(
        None, None, "No learning rate is given for the classifier on VGG16 features (0.001 is the baseline's).",
    ),
    "head_features": Statement(
        "we used the bottleneck features of the VGG16 pre-trained model", "V",
        "Bottleneck features are the output of VGG16's convolutional base, its block 5, which the 'paper' "
        "profile reads. How the classifier read them is not said: " + _CHOLLET + ", which the paper's "
        "words echo, flattens the maps into one long vector (7×7×512 = 25,088 numbers for a 224-pixel image). "
        "Averaging each of the 512 maps into one number (global average pooling) is the book's choice. "
        "The 'quick' profile also reads block 4, whose textures transfer better to ultrasound at small "
        "image sizes: the book's choice, made by cross-validation on the training images, never on a test "
        "part.",
        value="block5", book_adds="the average of each feature map (global average pooling), 512 numbers",
    ),
    "head_hidden": Statement(
        None, None,
        "The classifier on VGG16 features is not described. The 'paper' profile's 256 hidden units are "
        "those of " + _CHOLLET + "; the 'quick' profile uses 64.",
    ),
    "head_l2": Statement(
        None, None,
        "No weight decay is mentioned. The classifier on VGG16 features reads hundreds of features of a "
        "few hundred images; the 'quick' profile decays its weights strongly, the book's choice.",
    ),
    "head_augmentation": Statement(
        None, None,
        "Not said. If the 24-fold augmented set came first, as III.A describes, the saved VGG16 features "
        "(III; 'bottleneck features', V) were computed on augmented images.",
    ),
    "finetune_layers": Statement(
        "All of the convolutional layers were frozen except for the last one", "III.C",
        "Read literally: one layer, block5_conv3, which the 'paper' profile trains. 'The last one' may also mean "
        "the last convolutional block (three layers), as in " + _CHOLLET + ", which the 'quick' profile trains.",
        value="block5_conv3", ambiguous=True,
    ),
    "finetune_epochs": Statement(
        "Classifier training was carried on with 50 iterations", "III.C",
        "The only count given in the section on fine-tuning; 'iterations' need not be epochs. In the book "
        "an epoch of fine-tuning reads one of the copies of each training image (the cached activations "
        "of one copy per image), as many items as an epoch of the baseline and 1/24 of an epoch of the "
        "classifier alone in the 'paper' profile.",
        value=50, ambiguous=True,
    ),
    "finetune_learning_rate": Statement(
        None, None,
        "Not given. The paper names SGD (III.C); a learning rate of 1e-4 comes from " + _CHOLLET + ".",
    ),
    "momentum": Statement(
        None, None,
        "Not given. The paper names 'stochastic gradient descent (SGD)' (III.C) without momentum; 0.9 comes "
        "from " + _CHOLLET + ".",
    ),
    "finetune_clipnorm": Statement(
        None, None,
        "Not given. The book's guard: SGD's steps are capped at a gradient norm of 10, above what "
        "fine-tuning the ImageNet weights needs on nine steps in ten, so that a rare spike, or "
        "random weights, cannot blow the unfrozen layers up.",
    ),
    "finetune_mode": Statement(
        "derived from the saved features of the VGG16 pre-trained CNN model", "III",
        "Suggests the classifier was first trained on saved VGG16 features, as in " + _CHOLLET + "; how the "
        "unfrozen layers were then trained is not said.",
    ),
    "weights": Statement(
        "trained using more than 14 million images of 1000 classes", "III",
        "Pre-trained VGG16, i.e. ImageNet weights. The numbers mix two things: ImageNet has about 14 million "
        "images in about 21,000 categories, while VGG16 was trained on its 1,000-class ILSVRC-2012 subset "
        "of about 1.3 million images (Simonyan and Zisserman 2015; Russakovsky et al. 2015).",
        value="imagenet",
    ),
    "strict_weights": Statement(
        None, None,
        "The book's safeguard: stop instead of silently training from random weights.", book_only=True,
    ),
    "precision": Statement(None, None, "Numerical precision is not reported.", book_only=True),
    "n_boot": Statement(
        None, None, "The paper reports no confidence intervals; the bootstrap is the book's.", book_only=True,
    ),
    "folds": Statement(
        None, None, "The paper reports one split; cross-validation is the book's.", book_only=True,
    ),
    "phantom_n": Statement(None, None, "The synthetic phantom is the book's.", book_only=True),
    "chapter_timeout": Statement(None, None, "How long the book lets a chapter run.", book_only=True),
}

FACTS: dict[str, Fact] = {
    "images_collected": Fact(
        1300, "a dataset that consists of 1300 high-resolution ultrasound images", "III.A",
        "Collected at the Baheya Foundation, Egypt.",
    ),
    "image_files": Fact("JPEG, 960×720 pixels", "in JPEG format, with a size of 960×720 pixels", "III.A"),
    "training_set": Fact(
        {"benign": 650, "malignant": 350}, "a 1,000-image training set (650 benign and 350 malignant)", "III.A",
        "The book's 'paper' profile trains on far fewer: on the full BUSI release (437 benign and 210 "
        "malignant images) 70% of the images less a validation fifth, about 360 images.",
    ),
    "training_images_run": Fact(
        1000, "The training was run with 1000 images", "III",
        "Said with the baseline's settings. It fits the reading in which the 300 test images stayed apart; "
        "a random 70/30 cut of all 21,600 copies would have trained on copies of nearly every image.",
    ),
    "test_set": Fact(
        {"benign": 165, "malignant": 135}, "a 300-image test set (165 benign and 135 malignant)", "III.A",
    ),
    "augmented_images": Fact(
        21600, "increase the size of our data by 24 times to reach 21,600 images", "III.A", "24 × 900.",
    ),
    "augmented_split": Fact(
        {"train": 0.7, "test": 0.3}, "70% for training, and 30% for testing", "III.A",
        "Of the augmented set: 15,120 and 6,480 images. Read as written, copies of one image then sit on "
        "both sides of the split; whether Table 1 was measured on this split is not said.",
    ),
    "scanner": Fact("GE LOGIQ E9 XDclear", "GE Ultrasound LOGIQ E9 XDclear model", "III"),
    "probe": Fact("ML6-15-D linear matrix array", "broad-spectrum linear matrix array probe (ML6-15-D)", "III"),
    "annotation": Fact(
        "lesions and margins marked by expert doctors, BI-RADS",
        "marked the lesions and their margins according to the BI-RADS scoring criteria", "III",
        "Approved by the Baheya Ethics Committee and Egypt's Ministry of Health and Population.",
    ),
    "availability": Fact(
        None, None, None, "The paper does not say whether its images are available to others.",
    ),
    "software": Fact(
        "Keras, Theano backend, Python 3.5", "Python version 3.5 with Theano backend", "III",
        "The paper names Keras in the same paragraph.",
    ),
    "hardware": Fact("NVIDIA GeForce GTX 1050", "NVIDIA GeForce GTX 1050 GPU", "III.D"),
    "seconds_baseline": Fact(
        300, "5 minutes (for model training and testing)", "III.D",
    ),
    "seconds_vgg16_transfer": Fact(
        100, "100 second (for model testing)", "III.D", "Testing only: no training time is given.",
    ),
    "seconds_vgg16_finetune": Fact(2196, "36.6 minutes (for training and testing)", "III.D"),
    "vgg16_pretraining": Fact(
        "ImageNet", "trained using more than 14 million images of 1000 classes", "III",
        "See the note on the 'weights' setting: 1,000 classes means the ILSVRC-2012 subset, about 1.3 "
        "million images.",
    ),
    "transfer_model": Fact(
        "a classifier on frozen VGG16 features (the book's reading)",
        "the pre-trained VGG16 CNN architecture is further trained with the ultrasound images", "Abstract",
        "Read alone, 'further trained' says that the layers of VGG16 learnt from ultrasound. Section I "
        "describes transfer learning 'as a feature extractor' feeding 'a narrow classifier', Section V "
        "'the bottleneck features', and III.D times this model for testing only: the book reads the "
        "second model as a classifier trained on frozen VGG16 features, and trains the layers of VGG16 "
        "only in the third (fine-tuned) model.",
    ),
    "pretraining_claim": Fact(
        "ImageNet, then ultrasound", "with pre-training on US images", "Abstract",
        "The abstract calls the fine-tuning on ultrasound 'pre-training'; the VGG16 weights themselves come "
        "from ImageNet (III).",
    ),
    "metrics": Fact(
        ("accuracy", "AUC"), "Comparison between accuracy of our tested model", "IV/Table 1",
        "No sensitivity, specificity, confidence interval or number of test images is given with them.",
    ),
    "accuracy_in_text": Fact(
        {"vgg16-transfer": 0.95, "vgg16-finetune": 0.973}, "has an accuracy of 0.95 and an AUC of 0.97", "IV",
        "The text rounds Table 1's 0.9511 and 0.9739.",
    ),
}

#: Table 1 as printed: (task, book model name or None for Hadad et al.'s rows, accuracy, AUC).
TABLE1: tuple[tuple[str, str | None, float, float], ...] = (
    ("Hadad et al. MR trained from scratch", None, 0.94, 0.98),
    ("Hadad et al. MR VGG-Net", None, 0.90, 0.95),
    ("Hadad et al. fine-tuned MG-Net", None, 0.93, 0.97),
    ("Our tested – US Baseline method", "baseline", 0.79, 0.81),
    ("Our tested – US Pre-trained VGG-Net", "vgg16-transfer", 0.9511, 0.97),
    ("Our tested – US Fine-tuned VGG", "vgg16-finetune", 0.9739, 0.98),
)


#: Where the rows of Table 1 come from: the paper's own models, or Hadad et al. (2017), the
#: paper's reference [17], on MR and mammography images.
TABLE1_SOURCES = {True: "Hijab et al. 2019 (ultrasound)",
                  False: "Hadad et al. 2017 (MR, mammography), quoted"}


def table1() -> pd.DataFrame:
    """Table 1 of the paper, with the book's name for each of the paper's own three models and
    the source of each row (three rows quote Hadad et al. 2017)."""
    table = pd.DataFrame(TABLE1, columns=["task", "model", "accuracy", "auc"])
    table["source"] = [TABLE1_SOURCES[model is not None] for _, model, _, _ in TABLE1]
    return table


def facts_table() -> pd.DataFrame:
    """:data:`FACTS` as a table: what, the paper's words, section and note."""
    rows = [
        {"fact": key, "value": f.value, "the paper says": f.says or "(silent)", "section": f.section or "",
         "note": f.note}
        for key, f in FACTS.items()
    ]
    return pd.DataFrame(rows).set_index("fact")


# --------------------------------------------------------------------------- the leak question

#: The book's one wording of the leak question (chapters, appendix, README and docstrings say
#: the same): what the text describes, and what the evidence can and cannot tell.
LEAK_VERDICT = (
    "Read as written, Section III.A augments the data before dividing them 70/30, which would put "
    "copies of one image on both sides of the split. Whether Table 1 was measured on that split is "
    "not known: its accuracies are not whole numbers of right answers over the 300 test images, but "
    "they fit a leaking 30% of the copies (6,480) and the 300 test images augmented apart (7,200) "
    "alike, and the paper also says that training was run with 1,000 images. A leak is possible, "
    "not established."
)

#: What bears on the leak question: (the evidence, where it comes from, which way it points).
LEAK_EVIDENCE: tuple[tuple[str, str, str], ...] = (
    ("'The augmented dataset was divided into 2 portions: 70% for training, and 30% for testing'",
     "III.A", "for a leak: copies of one image on both sides"),
    ("'a 1,000-image training set (650 benign and 350 malignant), and a 300-image test set'",
     "III.A", "against: a test set kept apart"),
    ("'The training was run with 1000 images'", "III", "against: training on the 1,000 images"),
    ("0.9511 and 0.9739 are not k/300, k/1,000 or k/1,300", "IV/Table 1 (arithmetic)",
     "neither: the accuracies were not computed on the unaugmented images"),
    ("both fit k/6,480 (30% of 21,600) and k/7,200 (300 × 24)", "IV/Table 1 (arithmetic)",
     "neither: a leaking 30% of the copies and an augmented separate test set fit alike"),
)


def leak_evidence() -> pd.DataFrame:
    """:data:`LEAK_EVIDENCE` as a table: the evidence, its source and which way it points."""
    return pd.DataFrame(LEAK_EVIDENCE, columns=["evidence", "source", "bears on a leak"])


# --------------------------------------------------------------------------- comparisons


def _same(a: object, b: object) -> bool:
    """Equal, with lists and tuples alike and floats compared to a relative 1e-9."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return a == b


def verdict(setting: str, value: object) -> str:
    """How ``value`` of ``setting`` relates to the paper: one of :data:`VERDICTS`."""
    if setting not in SETTINGS:
        raise ValueError(f"setting {setting!r} is not known; known settings: {', '.join(PROFILE_FIELDS)}")
    statement = SETTINGS[setting]
    if statement.book_only:
        return "book only"
    if statement.value is UNSTATED:
        return "fills a silence"
    if _same(value, statement.value):
        if statement.ambiguous:
            return "follows one reading"
        return "follows in part" if statement.book_adds else "follows"
    return "departs"


def side_by_side(profiles: Mapping[str, object], *, paper_profile: str | None = "paper") -> pd.DataFrame:
    """Every setting: the paper's words and section, each profile's value, and a verdict.

    ``profiles`` maps a column name to a profile object; each value is read from it with
    ``getattr``, so the table shows the settings actually in use.  The ``verdict`` column
    says whether ``profiles[paper_profile]`` follows the paper, follows it only in part (the
    ``book's part`` column says what the book adds), departs from it or fills one of its
    silences (``paper_profile=None`` leaves both columns out).
    """
    if paper_profile is not None and paper_profile not in profiles:
        raise ValueError(f"paper_profile={paper_profile!r} is not among the profiles given: {list(profiles)}")
    rows = []
    for setting in PROFILE_FIELDS:
        statement = SETTINGS[setting]
        row = {"setting": setting, "the paper says": statement.says or "(silent)", "section": statement.section or ""}
        for column, profile in profiles.items():
            if not hasattr(profile, setting):
                raise ValueError(f"profile {column!r} has no setting {setting!r}")
            row[column] = getattr(profile, setting)
        if paper_profile is not None:
            row["verdict"] = verdict(setting, row[paper_profile])
            row["book's part"] = statement.book_adds if row["verdict"] == "follows in part" else ""
        row["note"] = statement.note
        rows.append(row)
    return pd.DataFrame(rows).set_index("setting")


# --------------------------------------------------------------------------- leak arithmetic


def _in_units(value: float, decimals: int) -> int:
    """``value`` as a whole number of units of its last reported decimal (0.9511 -> 9511)."""
    units = Decimal(str(value)) * 10**decimals
    if units != units.to_integral_value():
        raise ValueError(f"values: {value} has more than {decimals} decimals; pass decimals= to match")
    if not 0 <= units <= 10**decimals:
        raise ValueError(f"values: {value} is not a proportion between 0 and 1")
    return int(units)


def _k_range(units: np.ndarray | int, n: int, scale: int):
    """Smallest and largest whole k with k/n within half a unit (1/(2*scale)) of units/scale.

    Exact integer arithmetic: |k/n - u/scale| <= 1/(2 scale)  <=>  2un - n <= 2k scale <= 2un + n.
    """
    low = -((n - 2 * units * n) // (2 * scale))  # ceiling division
    high = (2 * units * n + n) // (2 * scale)
    return np.maximum(low, 0), np.minimum(high, n)


def _chance(n: int, decimals: int) -> float:
    """Share of all values with ``decimals`` decimals in [0, 1] that some k/n rounds to."""
    scale = 10**decimals
    low, high = _k_range(np.arange(scale + 1, dtype=np.int64), n, scale)
    return float(np.mean(high >= low))


def leak_arithmetic(
    values: Iterable[float] = (0.9511, 0.9739),
    denominators: Iterable[int] = (300, 1000, 1300, 6480, 21600),
    decimals: int = 4,
) -> pd.DataFrame:
    """For each reported accuracy and test-set size n: which whole k give k/n that rounds to it.

    An accuracy measured on n images is k/n for some whole number k of correct answers.  A
    value printed with ``decimals`` decimals fits n when some k/n lies within half a unit of
    its last decimal (a value exactly half-way counts, since either rounding rule could have
    produced it).  ``chance_fit`` is the share of all values with that many decimals that fit
    n at all: a fit means little when it is high (every value fits n >= 10**decimals), and a
    miss rules n out only if the accuracy really was correct answers over n images.  Note
    that 7,200 (the 300 test images augmented 24-fold) fits Table 1 as well as 6,480 does.
    """
    if not 1 <= decimals <= 6:
        raise ValueError(f"decimals must be between 1 and 6, got {decimals}")
    scale = 10**decimals
    ns = [int(n) for n in denominators]
    bad = [n for n in ns if n < 1]
    if bad:
        raise ValueError(f"denominators must be whole numbers of images >= 1, got {bad}")
    rows = []
    for value in values:
        units = _in_units(value, decimals)
        for n in ns:
            low, high = _k_range(units, n, scale)
            ks = tuple(range(int(low), int(high) + 1))
            rows.append({
                "reported": value,
                "n": n,
                "fits": bool(ks),
                "k": ks,
                "k_over_n": tuple(k / n for k in ks),
                "chance_fit": _chance(n, decimals),
            })
    return pd.DataFrame(rows, columns=["reported", "n", "fits", "k", "k_over_n", "chance_fit"])
