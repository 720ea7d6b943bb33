"""Every claimed metric beside an independent reference, on random but realistic predictions (issue 23): a
port of the VOC2007 devkit's VOCevaldet, a port of FCN's score.py, scikit-learn for top-k and for LFW's folds
and VAL at a FAR, scipy for the standard error, float64 numpy for bits/dim. COCO AP and proposal recall are
checked against COCOeval in test_coco_ap.py. Tolerance 1e-6 unless a test states a convention."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import sem
from sklearn.metrics import accuracy_score, roc_curve, top_k_accuracy_score

from lightning_modules.common import SegmentationScores, topk_errors
from lightning_modules.facenet import ten_fold_accuracy, threshold_at_far
from lightning_modules.pixelcnn_net import bits_per_dim
from lightning_modules.voc07 import voc07_average_precision

SEEDS = range(5)


# ---- VOC2007 detection AP: VOCevaldet.m, line by line ------------------------------------------------------


def vocevaldet(truths: list[dict], found: list[tuple[int, float, np.ndarray]], minoverlap=0.5) -> float:
    """The devkit's VOCevaldet for one class: `found` is (image, confidence, [x1 y1 x2 y2]) in the results
    file's order; boxes are inclusive pixel coordinates (the "+1" widths)."""
    npos = sum(int((~t["difficult"]).sum()) for t in truths)
    detected = [np.zeros(len(t["boxes"]), bool) for t in truths]
    order = sorted(range(len(found)), key=lambda d: -found[d][1])  # MATLAB's sort is stable too
    tp, fp = np.zeros(len(found)), np.zeros(len(found))
    for d, index in enumerate(order):
        image, _, bb = found[index]
        ovmax, jmax = -math.inf, None
        for j, bbgt in enumerate(truths[image]["boxes"]):
            bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
            iw, ih = bi[2] - bi[0] + 1, bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:
                ua = (
                    (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                    + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                    - iw * ih
                )
                if iw * ih / ua > ovmax:
                    ovmax, jmax = iw * ih / ua, j
        if ovmax >= minoverlap:
            if not truths[image]["difficult"][jmax]:
                if not detected[image][jmax]:
                    tp[d], detected[image][jmax] = 1, True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec, prec = tp / npos, tp / np.maximum(fp + tp, np.finfo(float).tiny)
    return sum((prec[rec >= t].max() if (rec >= t).any() else 0.0) / 11 for t in matlab_colon(0, 0.1, 1))


def matlab_colon(start: float, step: float, stop: float) -> list[float]:
    """MATLAB's `start:step:stop`, which VOCevaldet loops over: the first half counted up from `start`, the
    second down from `stop` (so 0:0.1:1 holds 0.7, not numpy arange's 0.7000000000000001; a recall of exactly
    7/10 then counts at the 0.7 point, as py-faster-rcnn's arange port would not)."""
    n = round((stop - start) / step)
    return [start + k * step if k <= n / 2 else stop - (n - k) * step for k in range(n + 1)]


def voc_scene(rng, images=12, classes=3):
    """Integer pixel boxes (VOC's), so IoUs land exactly on 0.5 now and then; difficult objects; misses,
    duplicates and false alarms."""
    truths, found = [], []
    for image in range(images):
        n = int(rng.integers(1, 6))
        xy = rng.integers(0, 300, (n, 2))
        boxes = np.concatenate([xy, xy + rng.integers(10, 150, (n, 2))], 1)
        truths.append(
            {"boxes": boxes, "labels": rng.integers(0, classes, n), "difficult": rng.random(n) < 0.15}
        )
        for box, label in zip(boxes, truths[-1]["labels"]):
            for _ in range(int(rng.integers(0, 3))):  # 0: a miss, 2: a duplicate
                found.append((image, label, round(float(rng.random()), 2), box + rng.integers(-8, 9, 4)))
        for _ in range(int(rng.integers(0, 3))):
            x, y = rng.integers(0, 300, 2)
            found.append(
                (image, int(rng.integers(0, classes)), round(float(rng.random()), 2), [x, y, x + 30, y + 40])
            )
    return truths, found


@pytest.mark.parametrize("seed", range(16))  # 11, 13 and 15 land a recall exactly on an 11-point mark
def test_voc07_ap_equals_the_devkits_vocevaldet(seed):
    """Convention: the devkit counts pixels inclusively (a box [x1, x2] is x2 − x1 + 1 wide); the project
    takes continuous corners. Given corners x2 + 1, the project's AP equals the devkit's exactly."""
    rng, classes = np.random.default_rng(seed), 3
    truths, found = voc_scene(rng, classes=classes)
    corners = lambda boxes: torch.tensor(np.asarray(boxes, float) + [0, 0, 1, 1])
    project = voc07_average_precision(
        [
            {
                "boxes": corners([f[3] for f in found if f[0] == i] or np.zeros((0, 4))),
                "scores": torch.tensor([f[2] for f in found if f[0] == i]),
                "labels": torch.tensor([f[1] for f in found if f[0] == i], dtype=torch.long),
            }
            for i in range(len(truths))
        ],
        [
            {
                "boxes": corners(t["boxes"]),
                "labels": torch.tensor(t["labels"]),
                "difficult": torch.tensor(t["difficult"]),
            }
            for t in truths
        ],
        classes,
    )
    for c in range(classes):
        per_class = [
            {"boxes": t["boxes"][t["labels"] == c], "difficult": t["difficult"][t["labels"] == c]}
            for t in truths
        ]
        reference = vocevaldet(
            per_class, [(i, s, np.asarray(b, float)) for i, label, s, b in found if label == c]
        )
        assert project[c] == pytest.approx(reference, abs=1e-12), c


def test_an_iou_of_exactly_one_half_is_a_hit_as_in_the_devkit():
    """VOCevaldet: `ovmax >= minoverlap` (py-faster-rcnn's voc_eval says `>`; the devkit is the reference)."""
    truth = [{"boxes": np.array([[0, 0, 9, 9]]), "difficult": np.array([False])}]
    half = np.array([0.0, 0.0, 9.0, 4.0])  # 50 of the truth's 100 pixels, inside it
    assert vocevaldet(truth, [(0, 0.9, half)]) == pytest.approx(1.0)
    project = voc07_average_precision(
        [
            {
                "boxes": torch.tensor([[0.0, 0.0, 10.0, 5.0]]),
                "scores": torch.tensor([0.9]),
                "labels": torch.tensor([0]),
            }
        ],
        [
            {
                "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
                "labels": torch.tensor([0]),
                "difficult": torch.tensor([False]),
            }
        ],
        1,
    )
    assert project[0] == pytest.approx(1.0)


# ---- FCN's mean IU and friends: score.py ------------------------------------------------------------------


def fcn_scores(truth: np.ndarray, predicted: np.ndarray, n: int) -> dict[str, float]:
    """FCN's score.py: fast_hist (labels outside 0..n−1, the void/border ones, count nowhere), then its four
    numbers."""
    k = (truth >= 0) & (truth < n)
    hist = np.bincount(n * truth[k].astype(int) + predicted[k], minlength=n**2).reshape(n, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
        freq = hist.sum(1) / hist.sum()
        return {
            "pixel_acc": np.diag(hist).sum() / hist.sum(),
            "mean_acc": np.nanmean(np.diag(hist) / hist.sum(1)),
            "mean_iu": np.nanmean(iu),
            "fw_iu": (freq[freq > 0] * iu[freq > 0]).sum(),
        }


@pytest.mark.parametrize(("classes", "void"), [(21, 255), (11, 11)])  # VOC's border label; CamVid's void
def test_segmentation_scores_equal_fcns_score_py(classes, void):
    rng = np.random.default_rng(classes)
    truth = rng.integers(0, classes - 3, (4, 40, 50))  # the last classes absent from the truth
    truth[rng.random(truth.shape) < 0.1] = void
    predicted = np.where(
        rng.random(truth.shape) < 0.6, truth % classes, rng.integers(0, classes, truth.shape)
    )
    scores = SegmentationScores(classes, ignore_index=void)
    scores.update(
        torch.nn.functional.one_hot(torch.tensor(predicted), classes).permute(0, 3, 1, 2).float(),
        torch.tensor(truth),
    )
    project, reference = scores.compute(), fcn_scores(truth, predicted, classes)
    for name, value in reference.items():
        assert float(project[name]) == pytest.approx(value, abs=1e-12), name


# ---- classification: top-k -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_top_k_errors_equal_scikit_learns_top_k_accuracy(seed):
    rng = np.random.default_rng(seed)
    logits, labels = rng.normal(size=(500, 37)).astype(np.float32), rng.integers(0, 37, 500)
    top1, top5 = topk_errors(torch.tensor(logits), torch.tensor(labels))
    for k, error in ((1, top1), (5, top5)):
        reference = top_k_accuracy_score(labels, logits, k=k, labels=range(37))
        assert 1 - float(error) == pytest.approx(reference, abs=1e-6)


# ---- LFW: 10 folds, its standard error, VAL at a FAR ------------------------------------------------------


def lfw_like(rng, pairs=600):
    same = np.arange(pairs) % 2 == 0
    distances = np.where(same, rng.gamma(2.0, 0.35, pairs), rng.gamma(6.0, 0.3, pairs)).astype(np.float32)
    return distances, same, np.arange(pairs) // (pairs // 10)


@pytest.mark.parametrize("seed", SEEDS)
def test_ten_fold_accuracy_equals_scikit_learn_fold_by_fold(seed):
    """Each fold scored with the threshold that scikit-learn finds best on the other nine, among the midpoints
    between their sorted distances (ties: the smallest, as the project takes); the ± is scipy's standard
    error of the ten fold accuracies."""
    distances, same, folds = lfw_like(np.random.default_rng(seed))
    accuracies = []
    for fold in range(10):
        train, test = folds != fold, folds == fold
        candidates = np.sort(np.append(distances[train], 0.0))
        thresholds = (candidates[:-1] + candidates[1:]) / 2
        train_accuracy = [accuracy_score(same[train], distances[train] < t) for t in thresholds]
        best = thresholds[int(np.argmax(train_accuracy))]
        accuracies.append(accuracy_score(same[test], distances[test] < best))
    mean, standard_error = ten_fold_accuracy(torch.tensor(distances), torch.tensor(same), torch.tensor(folds))
    assert float(mean) == pytest.approx(np.mean(accuracies), abs=1e-6)
    assert float(standard_error) == pytest.approx(sem(accuracies), abs=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("far", [1e-3, 1e-2])
def test_the_validation_rate_at_a_far_is_the_roc_curves(seed, far):
    """VAL at the threshold whose FAR is at most `far` equals the best true positive rate scikit-learn's ROC
    curve reaches with a false positive rate of at most `far` (scores: negated distances)."""
    distances, same, _ = lfw_like(np.random.default_rng(seed), pairs=4000)
    threshold = threshold_at_far(torch.tensor(distances), torch.tensor(same), far)
    accepted = torch.tensor(distances) < threshold
    fpr, tpr, _ = roc_curve(same, -distances)
    assert int(accepted[torch.tensor(~same)].sum()) <= far * (~same).sum()
    assert float(accepted[torch.tensor(same)].float().mean()) == pytest.approx(
        tpr[fpr <= far].max(), abs=1e-6
    )


# ---- PixelCNN: bits per dimension ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_bits_per_dim_equals_a_float64_log_likelihood(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (4, 256, 3, 8, 8))
    targets = rng.integers(0, 256, (4, 3, 8, 8))
    log_p = (
        logits
        - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        - logits.max(1, keepdims=True)
    )
    reference = -np.take_along_axis(log_p, targets[:, None], 1).mean() / np.log(2)
    project = bits_per_dim(torch.tensor(logits, dtype=torch.float32), torch.tensor(targets))
    assert float(project) == pytest.approx(reference, rel=1e-6)
