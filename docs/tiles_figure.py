"""Draws docs/flash_tiles.png, the README's picture of why flash attention's memory is O(N).

Run from anywhere: python docs/tiles_figure.py
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
N = 16  # the drawing's L = S, in tile-sized cells
BR, BC = 2, 2  # one query block and one key tile, in cells
ROW, COL = 6, 8  # where the tile in flight sits


def _frame(ax, title):
    ax.set_xlim(-3.2, N + 5.2)
    ax.set_ylim(N + 1.2, -1.5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    ax.text(N / 2, -0.6, "keys j = 0 … S−1", ha="center", fontsize=9)
    ax.text(-0.6, N / 2, "queries i = 0 … L−1", va="center", ha="right", rotation=90, fontsize=9)
    ax.add_patch(Rectangle((0, 0), N, N, fill=False, linewidth=1.2))


def naive(ax):
    _frame(ax, "naive: the whole L×S score matrix is held")
    ax.add_patch(Rectangle((0, 0), N, N, facecolor="#d62728", alpha=0.55))
    label = "S = scale·QKᵀ + mask\nP = softmax(S)\nL·S numbers\n(fp32, L = S = 16k:\n1 GiB per head)"
    ax.text(N / 2, N / 2, label, ha="center", va="center", fontsize=10, color="white", weight="bold")
    ax.text(N + 0.8, N / 2, "then\nO = P·V", va="center", fontsize=9)


def flash(ax):
    _frame(ax, "flash: one Br×Bc tile of scores at a time")
    ax.add_patch(Rectangle((0, ROW), N, BR, facecolor="#1f77b4", alpha=0.15))
    ax.add_patch(Rectangle((0, ROW), COL, BR, facecolor="#1f77b4", alpha=0.35, hatch="//", edgecolor="#1f77b4"))
    ax.add_patch(Rectangle((COL, ROW), BC, BR, facecolor="#ff7f0e", alpha=0.9))
    ax.text(COL + BC / 2, ROW - 0.35, "Br×Bc", ha="center", fontsize=9, color="#ff7f0e", weight="bold")
    ax.text(COL / 2, ROW + BR + 0.8, "done: folded into m, l, O", ha="center", fontsize=8, color="#1f77b4")
    ax.add_patch(FancyArrowPatch((COL + BC + 0.3, ROW + BR / 2), (N - 0.3, ROW + BR / 2), arrowstyle="-|>",
                                 mutation_scale=12, color="#555555"))
    ax.text((COL + BC + N) / 2, ROW + BR + 0.8, "next K/V tiles", ha="center", fontsize=8, color="#555555")
    ax.add_patch(Rectangle((N + 1.2, ROW), 1.6, BR, facecolor="#2ca02c", alpha=0.7))
    ax.text(N + 2.0, ROW - 0.35, "O, m, l", ha="center", fontsize=8, color="#2ca02c", weight="bold")
    ax.text(N + 2.0, ROW + BR + 0.5, "Br×Ev\nrunning\noutput", ha="center", va="top", fontsize=7, color="#2ca02c")
    ax.add_patch(Rectangle((COL, N + 0.3), BC, 0.5, facecolor="#7f7f7f", alpha=0.7))
    ax.text(COL + BC + 0.4, N + 0.55, "K, V tile (Bc rows)", va="center", fontsize=8)
    ax.text(N / 2, N / 2 + 4.2, "each block of Br query rows sweeps the keys once;\n"
                                "in memory: the output (L×Ev) and per-worker tiles", ha="center", fontsize=8)


def main():
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5.2))
    naive(left)
    flash(right)
    fig.suptitle("Extra memory of one attention forward: O(L·S) for naive, O(L) for flash", fontsize=12)
    fig.tight_layout()
    path = os.path.join(HERE, "flash_tiles.png")
    fig.savefig(path, dpi=100)
    print(path)


if __name__ == "__main__":
    main()
