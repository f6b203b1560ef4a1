"""Frechet distance between Gaussians, from feature rows or from stored (mean, covariance) pairs, in
float64 with numpy alone (no scipy): |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2).
Covariances are the unbiased ones (numpy.cov, ddof 1)."""
import numpy as np


def gaussian_stats(features):
    """features [n, d] -> (mean [d], covariance [d, d]), float64."""
    f = np.asarray(features, np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance_stats(mu1, s1, mu2, s2):
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r1 @ s2 @ r1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def frechet_distance(f1, f2):
    """Between Gaussians fitted to feature rows f1 [n1, d] and f2 [n2, d]."""
    return frechet_distance_stats(*gaussian_stats(f1), *gaussian_stats(f2))
