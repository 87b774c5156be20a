"""Every OpenCV contour of every threshold level of a uint8 map, from two component trees.

``cv2.findContours(q >= L, RETR_TREE, ...)`` returns one contour per adjacent pair of an
8-connected foreground component and a 4-connected background component (Suzuki & Abe's
borders): the outer border of each foreground component C, and one hole border per background
component that C encloses. What wsoleval needs of a contour is its bounding box and its polygon
area (``cv2.contourArea``); both follow from the two components alone, so all levels are served
by one max-tree (foreground, 8-connected, levels going down) and one min-tree (background,
4-connected, levels going up) instead of one findContours call per level:

* box of the outer border of C = C's pixel bounding box (its extreme pixels are border pixels);
  box of the hole border of H = H's pixel bounding box grown by one pixel on each side (the border
  is the set of foreground pixels 4-adjacent to H);
* area: the contours cut every 2x2 window of pixel centres into pieces, each belonging to one
  component: for the foreground, 1 (4 pixels set), 1/2 (3 set), else 0; for the background,
  1 for 3 or 4 background pixels and for 2 adjacent ones, 1/2 to each of 2 diagonal ones, 1/2 for
  a single one. A contour encloses the pieces of its component and of everything nested inside,
  so outer(C) = own(C) + sum of hole(H) over C's holes, hole(H) = own(H) + sum of outer(I) over
  the islands I inside H. The sums are integers in half-pixel units (``area2 = 2 * area``), exact
  as OpenCV's float64 shoelace over integer points is.

Nesting at a level: the pixel above the raster-first pixel of C lies in the background
component that encloses C (or outside the image), and the pixel above the raster-first pixel
of a hole lies in the foreground component around it. A node's box and area depend only on its
own pixel set, so each is computed once and reused at every level where the node exists.

Implementation: numba-compiled union-find over the pixels in value order, one pass per tree (union
by rank, level compression, an 8-neighbour lookup table that needs one find per run of touched
neighbours), in a per-thread workspace reused across calls. About one image pixel of work each,
whatever the map: ``wsoleval`` uses it where tracing every level with OpenCV would cost more.
``tests/test_contour_tree.py`` checks boxes and areas against ``cv2.findContours`` level by level.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import NamedTuple

import numba as nb
import numpy as np

# --------------------------------------------------------------------------------------------
# Component trees (union-find over pixels sorted by value, Berger et al. 2007)
# --------------------------------------------------------------------------------------------
# Pixels live in a zero-padded flat frame: pixel (y, x) is index (y + 1) * (width + 2) + x + 1, so
# neighbours are fixed offsets and the padding (never processed) plays OpenCV's outside.


@nb.njit(cache=True, nogil=True)
def _find(zpar: np.ndarray, p: int) -> int:
    while zpar[p] != p:  # path halving
        zpar[p] = zpar[zpar[p]]
        p = zpar[p]
    return p


@nb.njit(cache=True, nogil=True)
def _padded_values(q: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Write ``q`` into ``value`` in the padded flat frame (padding: -1, below every value)."""
    height, width = q.shape
    stride = width + 2
    value[:] = -1
    for y in range(height):
        for x in range(width):
            value[(y + 1) * stride + x + 1] = q[y, x]
    return value


@nb.njit(cache=True, nogil=True)
def _sorted_padded(q: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Padded indices of the pixels in ascending value order, raster order within a value (counting sort)."""
    height, width = q.shape
    stride = width + 2
    start = np.zeros(257, np.int64)
    for y in range(height):
        for x in range(width):
            start[q[y, x] + 1] += 1
    for v in range(256):
        start[v + 1] += start[v]
    for y in range(height):
        for x in range(width):
            v = q[y, x]
            order[start[v]] = (y + 1) * stride + x + 1
            start[v] += 1
    return order


@nb.njit(cache=True, nogil=True)
def _merge(p, t, parent, x0, y0, x1, y1, first, own2):
    """Tree node ``t`` (a component that joins ``p``'s) becomes a child of node ``p``; p takes its attributes."""
    parent[t] = p
    x0[p] = min(x0[p], x0[t])
    y0[p] = min(y0[p], y0[t])
    x1[p] = max(x1[p], x1[t])
    y1[p] = max(y1[p], y1[t])
    first[p] = min(first[p], first[t])
    own2[p] += own2[t]


RING = ((-1, -1), (0, -1), (1, -1), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0))
"""The 8 neighbours (dx, dy) clockwise from the upper left; bit j of a neighbourhood mask is RING[j]."""


def _neighbourhood_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per 8-bit mask of already-processed neighbours, for the foreground (row 1) and background (row 0) tree:

    * ``joins[t, mask]``: one ring position per run of consecutive processed neighbours that is
      connected to the new pixel. Consecutive ring neighbours are 8-adjacent and even 4-adjacent
      through the corner pixel between them, so each run is already one component and needs a
      single union-find lookup (a background run must contain a 4-neighbour to touch the pixel);
    * ``pieces[t, mask]``: the doubled window pieces the new pixel adds to its component: +1 per
      2x2 window where at least two of the other three pixels are foreground (4 set: 1 -> 2 half
      pixels; 3 set: 0 -> 1), or where at most one is background (see the module docstring).
    """
    windows = ((0, 1, 7), (1, 2, 3), (7, 6, 5), (3, 5, 4))  # the other three pixels of each window
    joins = np.full((2, 256, 4), -1, np.int8)
    pieces = np.zeros((2, 256), np.int8)
    for foreground in (0, 1):
        for mask in range(256):
            bits = [(mask >> j) & 1 for j in range(8)]
            if all(bits):
                runs = [list(range(8))]
            else:
                starts = [j for j in range(8) if bits[j] and not bits[j - 1]]
                runs = []
                for j in starts:
                    run = []
                    while bits[j % 8]:
                        run.append(j % 8)
                        j += 1
                    runs.append(run)
            picks = [run[0] if foreground else next((j for j in run if j % 2), None) for run in runs]
            picks = [j for j in picks if j is not None]
            joins[foreground, mask, : len(picks)] = picks
            counts = [sum(bits[j] for j in window) for window in windows]
            pieces[foreground, mask] = sum((c >= 2) if foreground else (c <= 1) for c in counts)
    return joins, pieces


_JOINS, _PIECES = _neighbourhood_tables()

TREE_ROWS = 13
"""int32 rows of workspace one component tree uses (see ``_component_tree``)."""

_WORKSPACES = threading.local()


def _workspace(height: int, width: int) -> np.ndarray:
    """This thread's reusable int32 workspace: two trees, the padded map, the pixel order, two scratch rows."""
    size = (height + 2) * (width + 2)
    work = getattr(_WORKSPACES, "work", None)
    if work is None or work.shape[1] != size:
        work = np.empty((2 * TREE_ROWS + 4, size), np.int32)
        _WORKSPACES.work = work
    return work


@nb.njit(cache=True, nogil=True)
def _component_tree(
    value: np.ndarray,
    height: int,
    width: int,
    order: np.ndarray,
    foreground: bool,
    joins: np.ndarray,
    pieces: np.ndarray,
    work: np.ndarray,
):
    """Max-tree (``foreground``: components of q >= L, 8-connected) or min-tree (q < L, 4-connected).

    Union-find over the pixels in value order (Berger et al. 2007) with level compression: a pixel
    joins the node of its level when the component it meets has one, else it starts a node and the
    components it meets become children. Returns ``parent`` (per canonical node, the canonical
    node one level down, roots point at themselves; per merged node, its canonical node),
    ``node`` (per pixel, the node it joined: ``_canonical`` resolves it), ``nodes`` (all
    nodes ever started) and per canonical node: pixel box, ``first`` (raster-first pixel), ``own2``
    (doubled window pieces, see the module docstring) and, for the background, ``border``
    (touches the image border). Indices are padded-frame pixel indices. The arrays are rows of
    ``work`` (``TREE_ROWS`` x padded size, reused across calls: fresh multi-megabyte arrays would
    cost more in page faults than the tree itself).
    """
    stride = width + 2
    zpar, rank, node_of, node, parent = work[0], work[1], work[2], work[3], work[4]
    x0, y0, x1, y1, first, own2, border = work[5], work[6], work[7], work[8], work[9], work[10], work[11]
    zpar[:] = -1  # union-find over processed pixels, -1: not yet
    rank[:] = 0
    ring = np.empty(8, np.int32)
    for j in range(8):
        ring[j] = RING[j][1] * stride + RING[j][0]
    table = 1 if foreground else 0
    roots = np.empty(4, np.int32)
    n = order.size
    nodes = work[12]  # nodes in creation order
    n_nodes = 0
    for i in range(n):
        p = order[n - 1 - i] if foreground else order[i]
        v = value[p]
        y = p // stride
        x = p - y * stride
        mask = 0
        for j in range(8):
            if zpar[p + ring[j]] >= 0:
                mask |= 1 << j
        # The distinct components p touches, and a node of p's own level among theirs if any.
        n_roots = 0
        home = -1
        for a in range(4):
            j = joins[table, mask, a]
            if j < 0:
                break
            r = _find(zpar, p + ring[j])
            seen = False
            for b in range(n_roots):
                seen = seen or roots[b] == r
            if seen:
                continue
            roots[n_roots] = r
            n_roots += 1
            if home < 0 and value[node_of[r]] == v:
                home = node_of[r]
        if home < 0:  # p starts a node
            home = p
            nodes[n_nodes] = p
            n_nodes += 1
            parent[p] = p
            x0[p] = x1[p] = x
            y0[p] = y1[p] = y
            first[p] = p
            own2[p] = 0
            border[p] = 0
        else:
            x0[home] = min(x0[home], x)
            y0[home] = min(y0[home], y)
            x1[home] = max(x1[home], x)
            y1[home] = max(y1[home], y)
            first[home] = min(first[home], p)
        own2[home] += pieces[table, mask]
        if not foreground and (x == 1 or y == 1 or x == width or y == height):
            border[home] = 1
        node[p] = home
        zpar[p] = p
        root = p
        for b in range(n_roots):
            r = roots[b]
            t = node_of[r]
            if t != home:  # a child (higher level), or a node of this level merged into home
                _merge(home, t, parent, x0, y0, x1, y1, first, own2)
                border[home] |= border[t]
            if rank[r] < rank[root]:
                zpar[r] = root
            elif rank[r] > rank[root]:
                zpar[root] = r
                root = r
            else:
                zpar[r] = root
                rank[root] += 1
        node_of[root] = home
    # Canonical form: a node whose parent has its own value was merged into it; point such
    # nodes at the end of their chain, and canonical nodes at the canonical node below.
    nodes = nodes[:n_nodes]
    for p in nodes:
        c = p
        while parent[c] != c and value[parent[c]] == value[c]:
            c = parent[c]
        while p != c:
            nxt = parent[p]
            parent[p] = c
            p = nxt
    for p in nodes:
        up = parent[p]
        if up != p and value[up] != value[p] and value[parent[up]] == value[up]:
            parent[p] = parent[up]
    return parent, node, nodes, x0, y0, x1, y1, first, own2, border


@nb.njit(cache=True, nogil=True)
def _canonical(parent: np.ndarray, value: np.ndarray, t: int) -> int:
    """The canonical node of node ``t`` (itself, or the node of its level it was merged into)."""
    up = parent[t]
    return up if up != t and value[up] == value[t] else t


# --------------------------------------------------------------------------------------------
# Contours per level
# --------------------------------------------------------------------------------------------


@nb.njit(cache=True, nogil=True)
def _canonical_nodes(started, value, parent, border, foreground):
    """Canonical nodes (holes only, for the background) and the level interval [low, high] of each."""
    nodes = np.empty(started.size, np.int32)
    low = np.empty(started.size, np.int64)
    high = np.empty(started.size, np.int64)
    count = 0
    for p in started:
        up = parent[p]
        if up != p and value[up] == value[p]:
            continue
        if foreground:  # component of q >= L for value(parent) < L <= value(p)
            lo, hi = (0 if up == p else value[up] + 1), value[p]
        else:  # component of q < L for value(p) < L <= value(parent)
            if border[p]:
                continue
            lo, hi = value[p] + 1, (256 if up == p else value[up])
        nodes[count] = p
        low[count] = lo
        high[count] = hi
        count += 1
    return nodes[:count], low[:count], high[:count]


@nb.njit(cache=True, nogil=True)
def _contour_nodes(
    q: np.ndarray, level_values: np.ndarray, need_area: bool, joins: np.ndarray, pieces: np.ndarray, work: np.ndarray
):
    height, width = q.shape
    stride = width + 2
    value = _padded_values(q, work[2 * TREE_ROWS])
    order = _sorted_padded(q, work[2 * TREE_ROWS + 1, : height * width])
    fg = _component_tree(value, height, width, order, True, joins, pieces, work[:TREE_ROWS])
    bg = _component_tree(value, height, width, order, False, joins, pieces, work[TREE_ROWS : 2 * TREE_ROWS])
    fg_parent, fg_node, fg_first = fg[0], fg[1], fg[7]
    bg_parent, bg_node, bg_first, bg_border = bg[0], bg[1], bg[7], bg[9]

    fg_nodes, low, high = _canonical_nodes(fg[2], value, fg_parent, fg[9], True)
    fg_k0 = np.searchsorted(level_values, low, side="left")
    fg_k1 = np.searchsorted(level_values, high, side="right")
    keep = fg_k1 > fg_k0
    fg_nodes, fg_k0, fg_k1 = fg_nodes[keep], fg_k0[keep], fg_k1[keep]
    holes, low, high = _canonical_nodes(bg[2], value, bg_parent, bg_border, False)
    hole_k0 = np.searchsorted(level_values, low, side="left")
    hole_k1 = np.searchsorted(level_values, high, side="right")
    keep = hole_k1 > hole_k0
    holes, hole_k0, hole_k1 = holes[keep], hole_k0[keep], hole_k1[keep]

    # Boxes in image coordinates: the outer border spans its component, a hole border one more pixel.
    fg_boxes = np.empty((fg_nodes.size, 4), np.int64)
    for i in range(fg_nodes.size):
        for c in range(4):  # padded -> image coordinates
            fg_boxes[i, c] = fg[3 + c][fg_nodes[i]] - 1
    hole_boxes = np.empty((holes.size, 4), np.int64)
    for i in range(holes.size):
        for c in range(4):  # padded -> image coordinates, then one pixel out on each side
            hole_boxes[i, c] = bg[3 + c][holes[i]] - (2 if c < 2 else 0)
    fg_area2 = fg[8][fg_nodes].astype(np.int64)
    hole_area2 = bg[8][holes].astype(np.int64)
    if need_area and holes.size:
        _nest_areas(
            value, stride, level_values, fg_parent, fg_node, fg_first, fg_nodes, fg_k0, fg_k1, fg_boxes, fg_area2,
            bg_parent, bg_node, bg_first, bg_border, holes, hole_k0, hole_k1, hole_boxes, hole_area2,
            work[2 * TREE_ROWS + 2], work[2 * TREE_ROWS + 3],
        )  # fmt: skip
    return fg_boxes, fg_area2, fg_k0, fg_k1, hole_boxes, hole_area2, hole_k0, hole_k1


@nb.njit(cache=True, nogil=True)
def _alive_lists(k0: np.ndarray, k1: np.ndarray, n_levels: int):
    """CSR lists of the nodes alive at each level."""
    counts = np.zeros(n_levels + 1, np.int64)
    for i in range(k0.size):
        for k in range(k0[i], k1[i]):
            counts[k + 1] += 1
    for k in range(n_levels):
        counts[k + 1] += counts[k]
    fill = counts[:-1].copy()
    items = np.empty(counts[-1], np.int64)
    for i in range(k0.size):
        for k in range(k0[i], k1[i]):
            items[fill[k]] = i
            fill[k] += 1
    return counts, items


@nb.njit(cache=True, nogil=True)
def _nest_areas(
    value, stride, level_values, fg_parent, fg_node, fg_first, fg_nodes, fg_k0, fg_k1, fg_boxes, fg_area2,
    bg_parent, bg_node, bg_first, bg_border, holes, hole_k0, hole_k1, hole_boxes, hole_area2, fg_row, hole_row,
):  # fmt: skip
    """Turn own pieces into contour areas where holes exist: children add to the contour around them.

    Done at the first level where a node exists beside a hole; the result holds at all its levels.
    """
    n_levels = level_values.size
    fg_at, fg_items = _alive_lists(fg_k0, fg_k1, n_levels)
    hole_at, hole_items = _alive_lists(hole_k0, hole_k1, n_levels)
    for i in range(fg_nodes.size):  # node -> its row (scratch rows of the workspace)
        fg_row[fg_nodes[i]] = i
    for i in range(holes.size):
        hole_row[holes[i]] = i
    fg_pos = np.full(fg_nodes.size, -1, np.int64)  # position in this level's list, per node row
    hole_pos = np.full(holes.size, -1, np.int64)
    fg_done = np.zeros(fg_nodes.size, np.bool_)
    hole_done = np.zeros(holes.size, np.bool_)
    fg_own = fg_area2.copy()
    hole_own = hole_area2.copy()
    for k in range(n_levels):
        level = level_values[k]
        fgs = fg_items[fg_at[k] : fg_at[k + 1]]
        hs = hole_items[hole_at[k] : hole_at[k + 1]]
        fg_pending = False
        for i in fgs:
            fg_pending = fg_pending or not fg_done[i]
        hole_pending = False
        for j in hs:
            hole_pending = hole_pending or not hole_done[j]
        if not (fg_pending or hole_pending):
            continue
        if hs.size == 0:  # no hole at this level: every contour is an outer border, area = own pieces
            for i in fgs:
                fg_done[i] = True
            continue
        # Parent of each node at this level: a hole (of an fg node; -1 = outside) or an fg node (of a
        # hole), as a position in this level's list; looked up only where a parent still needs it.
        n_f, n_h = fgs.size, hs.size
        for a in range(n_f):
            fg_pos[fgs[a]] = a
        for a in range(n_h):
            hole_pos[hs[a]] = a
        size = np.empty(n_f + n_h, np.int64)
        up = np.full(n_f + n_h, -1, np.int64)
        done = np.empty(n_f + n_h, np.bool_)
        acc = np.empty(n_f + n_h, np.int64)  # own pieces, or the final area once known
        for a in range(n_f):
            i = fgs[a]
            b = fg_boxes[i]
            size[a] = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
            done[a] = fg_done[i]
            acc[a] = fg_area2[i] if fg_done[i] else fg_own[i]
            z = fg_first[fg_nodes[i]] - stride
            if hole_pending and z >= stride:  # not the padding row: a background pixel of the image
                c = _canonical(bg_parent, value, bg_node[z])
                while bg_parent[c] != c and value[bg_parent[c]] < level:
                    c = bg_parent[c]
                if not bg_border[c]:
                    up[a] = n_f + hole_pos[hole_row[c]]
        for a in range(n_h):
            j = hs[a]
            b = hole_boxes[j]
            size[n_f + a] = (b[2] - b[0] - 1) * (b[3] - b[1] - 1)
            done[n_f + a] = hole_done[j]
            acc[n_f + a] = hole_area2[j] if hole_done[j] else hole_own[j]
            if fg_pending:
                c = _canonical(fg_parent, value, fg_node[bg_first[holes[j]] - stride])
                while fg_parent[c] != c and value[fg_parent[c]] >= level:
                    c = fg_parent[c]
                up[n_f + a] = fg_pos[fg_row[c]]
        # Children have strictly smaller pixel boxes than their parents: smallest first.
        for a in np.argsort(size, kind="mergesort"):
            if up[a] >= 0 and not done[up[a]]:
                acc[up[a]] += acc[a]
        for a in range(n_f):
            fg_area2[fgs[a]] = acc[a]
            fg_done[fgs[a]] = True
        for a in range(n_h):
            hole_area2[hs[a]] = acc[n_f + a]
            hole_done[hs[a]] = True


class LevelContours(NamedTuple):
    """Contours of the masks ``q >= level_values[k]``, outer borders first, then hole borders.

    ``boxes`` are inclusive pixel extents of the contour points (x0, y0, x1, y1), i.e.
    ``cv2.boundingRect``'s x, y, x + w - 1, y + h - 1; ``area2`` is twice ``cv2.contourArea``
    (filled only with ``need_area``); contour ``i`` exists at levels ``k0[i] <= k < k1[i]``.
    """

    boxes: np.ndarray
    area2: np.ndarray
    k0: np.ndarray
    k1: np.ndarray


def _announce_first_compilation() -> None:
    """Say so on stderr when this process is about to compile the kernels (no numba cache yet: ~20 s, once)."""
    global _ANNOUNCED
    if _ANNOUNCED:
        return
    _ANNOUNCED = True
    try:  # numba's on-disk cache index of the main kernel (private API; silent if it moved)
        cached = Path(_contour_nodes._cache._cache_file._index_path).exists()
    except AttributeError:
        return
    if not cached:
        print(
            "camexp: compiling the wsoleval contour-tree kernels with numba (once per install, about 20 s; "
            f"cached in {_contour_nodes._cache._cache_path})",
            file=sys.stderr,
            flush=True,
        )


_ANNOUNCED = False


def level_contours(q: np.ndarray, level_values: np.ndarray, need_area: bool = True) -> LevelContours:
    """All contours of ``q >= L`` for every L of ``level_values`` (strictly ascending, 1..255) at once.

    The trees are built on the level index of each pixel rather than its value (the same masks at
    the asked levels): with a coarse threshold grid, fewer levels mean fewer tree nodes.
    """
    _announce_first_compilation()
    q = np.asarray(q)
    if q.ndim != 2 or q.dtype != np.uint8:
        raise ValueError(f"level_contours expects a 2-D uint8 map; got shape {q.shape}, dtype {q.dtype}.")
    levels = np.asarray(level_values, dtype=np.int64)
    if levels.size and (np.any(np.diff(levels) <= 0) or levels[0] < 1 or levels[-1] > 255):
        raise ValueError(f"level_values must be strictly ascending integers in 1..255; got {levels.tolist()}.")
    rank = np.searchsorted(levels, np.arange(256), side="right").astype(np.uint8)  # levels <= value
    ranked = np.ascontiguousarray(rank[q])  # q >= levels[k]  <=>  ranked >= k + 1
    work = _workspace(*q.shape)
    fg_boxes, fg_area2, fg_k0, fg_k1, hole_boxes, hole_area2, hole_k0, hole_k1 = _contour_nodes(
        ranked, np.arange(1, levels.size + 1), need_area, _JOINS, _PIECES, work
    )
    return LevelContours(
        boxes=np.concatenate([fg_boxes, hole_boxes]),
        area2=np.concatenate([fg_area2, hole_area2]),
        k0=np.concatenate([fg_k0, hole_k0]),
        k1=np.concatenate([fg_k1, hole_k1]),
    )


# --------------------------------------------------------------------------------------------
# Per-level reductions over the contours alive at each level
# --------------------------------------------------------------------------------------------


@nb.njit(cache=True, nogil=True)
def level_max(k0: np.ndarray, k1: np.ndarray, scores: np.ndarray, n_levels: int) -> np.ndarray:
    """Per level, the largest score of the contours alive there (NaN where none is)."""
    best = np.full(n_levels, np.nan)
    for i in range(scores.size):
        s = scores[i]
        for k in range(k0[i], k1[i]):
            if not best[k] >= s:  # also replaces NaN
                best[k] = s
    return best


@nb.njit(cache=True, nogil=True)
def level_largest(k0: np.ndarray, k1: np.ndarray, area2: np.ndarray, scores: np.ndarray, n_levels: int):
    """Per level, the score of the contour of largest area, and whether another contour of that area scores otherwise.

    The second array marks levels where the largest area is shared by contours with different scores:
    there the pick depends on OpenCV's contour order, which the caller must take from OpenCV.
    """
    best_area = np.full(n_levels, -1, np.int64)
    score = np.full(n_levels, np.nan)
    ambiguous = np.zeros(n_levels, np.bool_)
    for i in range(area2.size):
        a = area2[i]
        s = scores[i]
        for k in range(k0[i], k1[i]):
            if a > best_area[k]:
                best_area[k] = a
                score[k] = s
                ambiguous[k] = False
            elif a == best_area[k] and s != score[k]:
                ambiguous[k] = True
    return score, ambiguous
