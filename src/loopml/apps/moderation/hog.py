"""Dense HOG features computed once per image so a sliding window costs nine small dot products.

The descriptor is the one ``skimage.feature.hog`` computes (9 unsigned orientations with hard
binning, 6-pixel cells averaged, 2x2-cell blocks, L2-Hys), for a 24x24 window = 4x4 cells =
3x3 blocks = 324 numbers. ``skimage.feature.hog`` itself takes ~120 ms for one 640x480 level on this
host, too slow for a pyramid on a CPU budget, so the cells and blocks are computed here with numpy
over the whole level and each window's linear score is the sum of its 9 block scores.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

CELL = 6
BINS = 9
WINDOW = 24
CELLS_PER_WINDOW = WINDOW // CELL  # 4
BLOCKS_PER_WINDOW = CELLS_PER_WINDOW - 1  # 3
BLOCK_LEN = 4 * BINS  # 36
N_FEATURES = BLOCKS_PER_WINDOW * BLOCKS_PER_WINDOW * BLOCK_LEN  # 324
_KX = np.array([[-1.0, 0.0, 1.0]], dtype=np.float32)
_KY = _KX.T.copy()
_SLOTS = 2 * BINS + 1


@lru_cache(maxsize=64)
def _cell_index(rows: int, cols: int) -> np.ndarray:
    """Cell number of every pixel of a ``rows x cols``-cell area, times ``BINS`` (cached per shape)."""
    r_idx = (np.arange(rows * CELL) // CELL)[:, None]
    c_idx = (np.arange(cols * CELL) // CELL)[None, :]
    return ((r_idx * cols + c_idx) * _SLOTS).astype(np.int32)


def cell_histograms(gray: np.ndarray, origin: int = 0) -> np.ndarray:
    """(rows, cols, 9) mean gradient magnitude per orientation per 6x6 cell, cells starting at ``origin``.

    Gradients are central differences over the whole array (0 on its border), so a window inside an
    image and the same window cut out with a 1-pixel margin (``origin=1``) get the same features.
    """
    import cv2

    g = np.ascontiguousarray(gray, dtype=np.float32)
    rows = (g.shape[0] - origin) // CELL
    cols = (g.shape[1] - origin) // CELL
    if rows < 1 or cols < 1:
        return np.zeros((max(rows, 0), max(cols, 0), BINS), dtype=np.float32)
    # [-1, 0, 1] with a reflected border: 0 on the border, exactly like skimage's np-slicing version
    gx = cv2.filter2D(g, cv2.CV_32F, _KX, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.filter2D(g, cv2.CV_32F, _KY, borderType=cv2.BORDER_REFLECT_101)
    sl = (slice(origin, origin + rows * CELL), slice(origin, origin + cols * CELL))
    mag, ang = cv2.cartToPolar(gx[sl], gy[sl], angleInDegrees=True)
    # 0..360 degrees in 20-degree slots (18 = exactly 360 after rounding), folded to 0..180 below
    slots = (ang * (BINS / 180.0)).astype(np.int32)
    slots += _cell_index(rows, cols)
    raw = np.bincount(slots.ravel(), weights=mag.ravel(), minlength=rows * cols * _SLOTS)
    raw = raw.reshape(rows, cols, _SLOTS)
    hist = raw[:, :, :BINS] + raw[:, :, BINS : 2 * BINS]
    hist[:, :, 0] += raw[:, :, 2 * BINS]
    return (hist * (1.0 / (CELL * CELL))).astype(np.float32)


def block_features(cells: np.ndarray) -> np.ndarray:
    """(rows-1, cols-1, 36) L2-Hys normalised 2x2-cell blocks."""
    rows, cols = cells.shape[0] - 1, cells.shape[1] - 1
    if rows < 1 or cols < 1:
        return np.zeros((max(rows, 0), max(cols, 0), BLOCK_LEN), dtype=np.float32)
    blocks = np.concatenate(
        [cells[:-1, :-1], cells[:-1, 1:], cells[1:, :-1], cells[1:, 1:]], axis=2
    )  # (r, c, 36): the cell order skimage uses is row-major within the block
    eps = 1e-5
    blocks = blocks / np.sqrt((blocks * blocks).sum(axis=2, keepdims=True) + eps * eps)
    np.minimum(blocks, 0.2, out=blocks)
    blocks = blocks / np.sqrt((blocks * blocks).sum(axis=2, keepdims=True) + eps * eps)
    return blocks.astype(np.float32)


def window_features(patch26: np.ndarray) -> np.ndarray:
    """The 324 features of one 26x26 patch (a 24x24 window plus a 1-pixel margin for the gradients)."""
    blocks = block_features(cell_histograms(patch26, origin=1))
    return blocks[:BLOCKS_PER_WINDOW, :BLOCKS_PER_WINDOW].reshape(-1)


def score_map(blocks: np.ndarray, weights: np.ndarray, bias: float) -> np.ndarray:
    """Linear score of every window position (one cell stride): ``bias + w . features(window)``."""
    out_r = blocks.shape[0] - BLOCKS_PER_WINDOW + 1
    out_c = blocks.shape[1] - BLOCKS_PER_WINDOW + 1
    if out_r < 1 or out_c < 1:
        return np.zeros((0, 0), dtype=np.float32)
    w = np.asarray(weights, dtype=np.float32).reshape(BLOCKS_PER_WINDOW, BLOCKS_PER_WINDOW, BLOCK_LEN)
    total = np.full((out_r, out_c), bias, dtype=np.float32)
    for i in range(BLOCKS_PER_WINDOW):
        for j in range(BLOCKS_PER_WINDOW):
            total += blocks[i : i + out_r, j : j + out_c] @ w[i, j]
    return total
