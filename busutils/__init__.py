"""Helpers for the book *Breast ultrasound classification with transfer learning*.

One package shared by every chapter, exercise and command (``python -m busutils``).  Not for
clinical use.  Where each idea lives, one module each:

Data
    data            find and load data sets (BUSI, BUS-BRA, BrEaST-Lesions-USG, class folders,
                    BreastMNIST); the synthetic phantom when there are none
    images          read one image file safely into a greyscale array
    phantom         the synthetic breast-ultrasound phantom
    duplicates      near-duplicates by perceptual hash, and how alike two images look
    splits          group-aware splits and folds, and the "new images" split
    augment         augmentation of training images, online and as fixed copies
    audit           an audit of a reader's own folder
    download        fetch and verify the public data sets (pooch, mirrors, safe unpacking)

Models
    models          the three models of the paper, and the parts of a model
    weights         where VGG16's pre-trained weights come from
    precision       float32, bfloat16 or float16, chosen from the hardware; the door to NumPy
    frozen          the frozen VGG16 front: built once, its activations cached, head and
                    fine-tuning trained on them
    cache           the on-disk store of activations, keyed by content

Training
    train           training with class weights, early stopping and a guard against divergence
    experiment      one experiment: split, train, evaluate
    runs            run folders: save, reuse, evaluate later on unseen images
    crossval        one cross-validation driver for one model or several
    finetuning      fine-tuning step by step: freezing, recompiling, layer-wise rates
    progress        progress bars for long steps

Evaluation
    evaluate        metrics with bootstrap intervals over duplicate groups, and the tables
    paired_auc      paired tests of two models' AUCs (DeLong, paired bootstrap)
    uncertainty     how sure are we: the bootstrap by hand, seeds, Holm, power
    operating_point thresholds and calibration
    clinical        from a calibrated probability to a decision (BI-RADS, predictive values)
    gradcam         Grad-CAM heat maps and the images' burned-in marks
    gradcam_checks  sanity checks of Grad-CAM
    probe           a linear probe on frozen features
    mechanics       the losses, weights and curves Keras and scikit-learn compute, written out

The book's own
    profiles        the quick, paper and smoke settings, and what chose them
    paper           what the paper states, as data
    leakage         what augmenting before the split can add to a score
    checks          the exercises' self-checks
    plots           the book's figures
    records         atomic JSON files, the environment, timings
    benchmark       the measurements behind ``make bench``
    cli             the command line
"""

__version__ = "0.1.0"
