"""What ``roomfuse eval`` writes: the tables, the picture sheet and the realism plot."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SHEET_GAPS = ((1, 96), (2, 96), (4, 96), (8, 96), (2, 160))  # (image index, gap width)


def markdown(results: dict) -> str:
    methods = results["methods"]
    lines = []
    for kind, res in results["kinds"].items():
        lines += [f"### {kind} ({res['cases']} cases; truth against itself: SWD {res['floor_swd']:.0f})", "",
                  "| method | PSNR | SSIM | SWD | SWD by level (fine to coarse) | detail | seam | ms/picture |",
                  "|---|---|---|---|---|---|---|---|"]
        for m in methods:
            r = res[m]
            levels = " ".join(f"{v:.0f}" for v in r["swd_levels"])
            lines.append(f"| {m} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['swd']:.0f} | {levels} | "
                         f"{r['detail']:.2f} | {r['seam']:.2f} | {r['ms_per_picture']:.0f} |")
        lines.append("")
    two = results.get("two_rooms") or {}
    if two:
        lines += [f"### two different rooms joined ({two['cases']} pairs, no truth; the rooms' own "
                  f"patches against each other: SWD {two['floor_swd']:.0f})", "",
                  "| method | SWD of the band against the rooms beside it | by level |", "|---|---|---|"]
        for m in methods:
            lines.append(f"| {m} | {two[m]['swd']:.0f} | {' '.join(f'{v:.0f}' for v in two[m]['swd_levels'])} |")
        lines.append("")
    if results.get("flicker"):
        canvas = results.get("canvas", {})
        lines += ["### live growers on video", "", "| method | flicker | ms/frame (p95) |", "|---|---|---|"]
        for m, f in results["flicker"].items():
            t = results["time"][m]
            lines.append(f"| {m} | {f:.3f} | {t['median_ms']:.1f} ({t['p95_ms']:.1f}) |")
        lines += ["", f"Flicker: mean absolute change (0..255) of filled, truly static pixels between "
                      f"frames; time on a {canvas.get('size', '?')} 2-feed canvas with "
                      f"{100 * canvas.get('unknown_fraction', 0):.0f} % unknown.", ""]
    lines += ["PSNR (dB) and SSIM over the unknown pixels only. SWD: sliced Wasserstein distance "
              "(x1e3) between 7x7 Laplacian-pyramid patches of the fills and of the truth, pooled "
              "over the cases, normalised by the truth's statistics; lower is more real. Detail: "
              "mean |Laplacian| of the fill over the truth's (1 = as detailed). Seam: the step "
              "across the hole's border over the step one pixel inside (1 = invisible)."]
    return "\n".join(lines) + "\n"


def _label(img: np.ndarray, text: str, width: int) -> np.ndarray:
    import cv2

    img = cv2.resize(img, (width, round(img.shape[0] * width / img.shape[1])), interpolation=cv2.INTER_AREA)
    cv2.rectangle(img, (0, 0), (width, 16), (0, 0, 0), -1)
    cv2.putText(img, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return img


def example_sheet(root: Path, growers: dict, path: Path, width: int = 260) -> None:
    """One row per case: truth, input (unknown in magenta), then each grower's fill."""
    import cv2

    from .evaluate import hole_cases, two_room_cases
    from .growth import data

    images = data.eval_gap_images(root)
    rows = [(f"gap {w}", *data.gap_cases([images[i % len(images)]], (w,), (0.5,))[0])
            for i, w in SHEET_GAPS]
    parts = data.split_media(root, held_out=True)
    photo = data.resize_height(data.load_rgb(root / parts["images"][1]), 360)
    bank = [m for rel in parts["person_clips"] for m in data.person_masks(data.read_frames(root / rel, step=40))]
    rows.append(("person hole", *hole_cases([photo], bank, seed=1)["person"][0]))
    rooms = two_room_cases(root)
    if rooms:
        rows.append(("two rooms", rooms[0][0], rooms[0][1]))
    lines = []
    for title, image, known in rows:
        shown = image.copy()
        shown[~known] = (255, 0, 255)
        cells = [_label(image.copy(), f"truth: {title}" if title != "two rooms" else title, width),
                 _label(shown, "input", width)]
        for name, grower in growers.items():
            grower.reset()
            cells.append(_label(grower.fill(image, known), name, width))
        lines.append(np.hstack(cells))
    widest = max(x.shape[1] for x in lines)
    sheet = np.vstack([np.pad(x, ((0, 0), (0, widest - x.shape[1]), (0, 0))) for x in lines])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def realism_plot(results: dict, path: Path) -> None:
    """Fidelity (PSNR) against realism (SWD) per method, one panel per kind of case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(results["kinds"])
    if not kinds:
        return
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        res = results["kinds"][kind]
        for m in results["methods"]:
            ax.scatter(res[m]["swd"], res[m]["psnr"], s=18)
            ax.annotate(m, (res[m]["swd"], res[m]["psnr"]), fontsize=7, xytext=(3, 2), textcoords="offset points")
        ax.axvline(res["floor_swd"], color="grey", lw=0.8, ls="--")
        ax.set_title(f"{kind} ({res['cases']} cases)", fontsize=9)
        ax.set_xlabel("patch SWD (lower = more real; dashed: the truth)", fontsize=8)
        ax.set_ylabel("PSNR over the hole (dB)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
