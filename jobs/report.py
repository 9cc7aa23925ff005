"""The map atlas as one static HTML page, rendered from what the report operation gathered
(cluster/report.py): this module only renders, and returns the page and its PNGs as bytes.

One card per map: the precursor OIP, the random-start OIP, the test images that drive the
map hardest, the dream of the map (when a ``dream --maps`` run of the same model exists) and
the metrics of jobs/atlas.py. The cards sort by map, loss, ratio to the data maximum or
entropy, and a filter shows only the maps random starts leave dead (small inline script,
no network). Below them: the KMeans, MLP and clusters figures and tables of the same data
set, when those runs exist. Every image is a small PNG next to ``index.html``; the page opens
from a file.
"""

from __future__ import annotations

import html
import io
import math
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from jobs.atlas import PrecursorRun
from jobs.figures import pixels_png

REPORT_DIR = "report"
DREAM_THUMBNAIL = 140  # px, side of the dream image in a card
SORT_KEYS = {"map": "map", "loss": "precursor loss", "ratio": "ratio to data max", "entropy": "entropy (nats)"}
EXTRA_JOBS = {  # job -> (the phase its table comes from, the figures it writes)
    "kmeans": ("sweep", ("elbow.png", "silhouette.png")),
    "mlp": ("epochs", ("curves.png",)),
    "clusters": ("comparison", ("comparison.png",)),
}


@dataclass(frozen=True)
class ExtraRun:
    """A finished KMeans, MLP or clusters run of the same data set: its figures (name -> PNG
    bytes) and the table of its phase ``EXTRA_JOBS[job][0]``."""

    job: str
    run_id: str
    figures: dict[str, bytes]
    table: pa.Table


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def number(value: float, digits: int = 4) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


# ----- PNGs ---------------------------------------------------------------------------------
def viridis_png(image: np.ndarray) -> bytes:
    """A 28×28 pattern in viridis, scaled to its own min / max (as the oips.png figures)."""
    from matplotlib import colormaps

    image = np.asarray(image, np.float64).reshape(28, 28)
    span = image.max() - image.min()
    scaled = (image - image.min()) / span if span > 0 else np.zeros_like(image)
    return pixels_png((colormaps["viridis"](scaled)[..., :3] * 255).round().astype(np.uint8))


def dream_thumbnail(dream_png: bytes) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(dream_png)) as opened:
        thumbnail = opened.convert("L").resize((DREAM_THUMBNAIL, DREAM_THUMBNAIL), Image.Resampling.BICUBIC)
    return pixels_png(np.asarray(thumbnail))


# ----- other runs of the same data set ----------------------------------------------------------
def html_table(frame, columns: dict[str, str], digits: int = 4) -> str:
    """A pandas DataFrame as an escaped HTML table; ``columns``: column -> heading."""
    head = "".join(f"<th>{esc(title)}</th>" for title in columns.values())
    rows = []
    for record in frame[list(columns)].to_dict("records"):
        cells = []
        for value in record.values():
            text = number(float(value), digits) if isinstance(value, (float, np.floating)) else ("–" if value is None else value)
            cells.append(f"<td>{esc(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class=\"data\"><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def extra_section(extra: ExtraRun, files: dict[str, bytes]) -> str:
    """The HTML section of a KMeans sweep, an MLP run or a clusters experiment; its figures
    go into ``files``."""
    images = []
    for figure, data in extra.figures.items():
        files[f"{extra.job}-{figure}"] = data
        images.append(f"<img class=\"figure\" src=\"{esc(f'{extra.job}-{figure}')}\" alt=\"{esc(f'{extra.job} {figure}')}\">")
    frame = extra.table.to_pandas()
    if extra.job == "kmeans":
        table = html_table(frame.sort_values("k"), {"k": "K", "inertia": "inertia", "silhouette_mean": "silhouette",
                                                     "fit_seconds": "fit s", "n_samples": "points"})
    elif extra.job == "mlp":
        frame = frame.sort_values("epoch").dropna(subset=["test_acc"])
        table = html_table(frame.tail(1), {"epoch": "last epoch", "train_acc": "train accuracy",
                                           "test_acc": "test accuracy", "n_inputs": "inputs"})
    else:
        table = html_table(frame, {"config": "config", "target": "target", "epoch_first": "first epoch",
                                   "cpu_seconds_first": "CPU s", "speedup_cpu_first": "speed-up",
                                   "best_test_acc": "best test"})
    return (f"<section class=\"extra\" id=\"{esc(extra.job)}\"><h2>{esc(extra.job)} — run {esc(extra.run_id)}</h2>"
            f"{''.join(images)}{table}</section>")


# ----- the page -----------------------------------------------------------------------------
def card(row: dict, grid: int, dream: str | None, test_titles: dict[int, str]) -> str:
    """One map's card: images and metrics, with the sort keys as data attributes."""
    map_id = int(row["map"])
    ratio = row["precursor_ratio"]
    dead = not row["oip_alive"]
    badges = []
    if dead:
        badges.append("<span class=\"badge dead\">dead from random starts</span>")
    if not row["precursor_alive"]:
        badges.append("<span class=\"badge dead\">precursor dead too</span>")
    tests = "".join(
        f"<img src=\"test-{index:05d}.png\" title=\"{esc(test_titles[index])}; activation {activation:.4g}\" alt=\"test image {index}\">"
        for index, activation in zip(row["top_indices"], row["top_activations"])
    )
    coarse = "".join(f"<span style=\"background: rgb({round(v * 255)},{round(v * 255)},{round(v * 255)})\" title=\"{v:g}\"></span>"
                     for v in row["coarse"])
    dream_figure = (f"<figure><img class=\"dream\" src=\"{esc(dream)}\" alt=\"dream of map {map_id}\"><figcaption>dream</figcaption></figure>"
                    if dream else "")
    oip_how = f"{row['oip_restarts']} starts × {row['oip_epochs']} steps, {row['oip_source']}"
    metrics = [
        ("precursor loss", f"{number(row['precursor_loss'])} ({'alive' if row['precursor_alive'] else 'dead'})"),
        ("random-start loss", f"{number(row['oip_loss'])} ({'alive' if row['oip_alive'] else 'dead'}; {oip_how})"),
        ("test-set max", number(row["data_max"])),
        ("ratio to data max", f"precursor {number(ratio, 3)}, random {number(row['oip_ratio'], 3)}"),
        ("CNN reads", f"digit {row['digit']} (p {row['probability']:.3f}, entropy {row['entropy']:.3f} nats)"),
        ("winning start", f"rank {row['precursor_rank']}, pattern {row['precursor_pattern']}"),
    ]
    rows = "".join(f"<dt>{esc(name)}</dt><dd>{esc(value)}</dd>" for name, value in metrics)
    data_ratio = "" if ratio is None or math.isnan(ratio) else f"{ratio:.6g}"
    return (
        f"<article class=\"card\" data-map=\"{map_id}\" data-loss=\"{row['precursor_loss']:.6g}\" data-ratio=\"{data_ratio}\" "
        f"data-entropy=\"{row['entropy']:.6g}\" data-dead=\"{int(dead)}\">"
        f"<h3>map {map_id} {''.join(badges)}</h3>"
        f"<div class=\"images\">"
        f"<figure><img class=\"oip\" src=\"precursor-map{map_id:04d}.png\" alt=\"precursor OIP of map {map_id}\"><figcaption>precursor OIP</figcaption></figure>"
        f"<figure><img class=\"oip\" src=\"oip-map{map_id:04d}.png\" alt=\"random-start OIP of map {map_id}\"><figcaption>random-start OIP</figcaption></figure>"
        f"{dream_figure}"
        f"<figure><div class=\"tests\">{tests}</div><figcaption>strongest test images</figcaption></figure>"
        f"</div><dl>{rows}<dt>coarse start</dt><dd><span class=\"coarse\" style=\"grid-template-columns: repeat({grid}, 1fr)\">{coarse}</span></dd></dl>"
        f"</article>"
    )


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; background: #fafafa; }
header p { margin: .2em 0; color: #555; }
.controls { position: sticky; top: 0; background: #fafafa; padding: .5em 0; z-index: 1; border-bottom: 1px solid #ddd; }
.controls label { margin-right: 1.2em; }
#cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(430px, 1fr)); gap: 12px; margin-top: 12px; }
.card { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 8px 10px; }
.card[hidden] { display: none; }
.card h3 { margin: 0 0 6px; font-size: 15px; }
.badge { font-size: 11px; font-weight: normal; padding: 1px 6px; border-radius: 8px; margin-left: 4px; }
.badge.dead { background: #fde2e1; color: #a40e0e; }
.images { display: flex; gap: 8px; align-items: flex-start; flex-wrap: wrap; }
figure { margin: 0; text-align: center; font-size: 11px; color: #555; }
img.oip, img.dream { width: 96px; height: 96px; image-rendering: pixelated; display: block; }
.tests { display: grid; grid-template-columns: repeat(3, 32px); gap: 1px; }
.tests img { width: 32px; height: 32px; image-rendering: pixelated; display: block; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 1px 10px; margin: 8px 0 0; font-size: 12px; }
dt { color: #666; } dd { margin: 0; }
.coarse { display: inline-grid; width: 30px; height: 30px; border: 1px solid #999; vertical-align: middle; }
.extra img.figure { max-width: 100%; display: block; margin: 8px 0; }
table.data { border-collapse: collapse; font-size: 12px; } table.data td, table.data th { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
"""

SCRIPT = """
(function () {
  const cards = document.getElementById('cards');
  const all = Array.from(cards.querySelectorAll('.card'));
  const sortKey = document.getElementById('sort'), order = document.getElementById('order');
  const deadOnly = document.getElementById('dead-only'), shown = document.getElementById('shown');
  function value(card) {
    const text = card.dataset[sortKey.value];
    return text === '' ? NaN : Number(text);
  }
  function apply() {
    const sign = order.value === 'desc' ? -1 : 1;
    all.sort(function (a, b) {
      const x = value(a), y = value(b);
      if (isNaN(x) !== isNaN(y)) return isNaN(x) ? 1 : -1;  // no value: always last
      if (x !== y && !isNaN(x)) return sign * (x - y);
      return Number(a.dataset.map) - Number(b.dataset.map);
    });
    all.forEach(function (card) {
      card.hidden = deadOnly.checked && card.dataset.dead !== '1';
      cards.appendChild(card);
    });
    shown.textContent = all.filter(function (card) { return !card.hidden; }).length;
    history.replaceState(null, '', '#sort=' + sortKey.value + '&order=' + order.value + (deadOnly.checked ? '&dead=1' : ''));
  }
  const state = new URLSearchParams(location.hash.slice(1));
  if (state.get('sort')) sortKey.value = state.get('sort');
  if (state.get('order')) order.value = state.get('order');
  deadOnly.checked = state.get('dead') === '1';
  [sortKey, order, deadOnly].forEach(function (control) { control.addEventListener('change', apply); });
  apply();
})();
"""


def render_report(run: PrecursorRun, metrics: pa.Table, test_images: np.ndarray, test_labels: np.ndarray,
                  atlas_run: str, dreams: dict[int, bytes], extras: list[ExtraRun]) -> dict[str, bytes]:
    """The page ``index.html`` and its PNGs, by file name.

    metrics: the atlas table (jobs.atlas.METRICS_SCHEMA); test_images uint8 (N, 28, 28) and
    test_labels (N,): the test set the metrics index into; dreams: map -> dream PNG of a
    ``dream --maps`` run of the same model; extras: runs of the same data set.
    """
    files: dict[str, bytes] = {}
    rows = sorted(metrics.to_pylist(), key=lambda row: row["map"])
    layer = run.params.get("layer", "conv3")
    grid = int(run.params.get("grid", 3))
    for row in rows:
        files[f"precursor-map{row['map']:04d}.png"] = viridis_png(row["precursor_image"])
        files[f"oip-map{row['map']:04d}.png"] = viridis_png(row["oip_image"])
    test_titles = {}
    for index in sorted({int(index) for row in rows for index in row["top_indices"]}):
        files[f"test-{index:05d}.png"] = pixels_png(np.asarray(test_images[index], np.uint8))
        test_titles[index] = f"test image {index}, label {int(test_labels[index])}"
    thumbnails = {}
    for map_id, dream_png in dreams.items():
        thumbnails[map_id] = f"dream-map{map_id:04d}.png"
        files[thumbnails[map_id]] = dream_thumbnail(dream_png)
    cards = "".join(card(row, grid, thumbnails.get(row["map"]), test_titles) for row in rows)
    n_dead_random = sum(not row["oip_alive"] for row in rows)
    n_dead_precursor = sum(not row["precursor_alive"] for row in rows)
    params = run.params
    summary = (f"{layer}, {len(rows)} maps; precursor: grid {params.get('grid')}, levels {params.get('levels')}, "
               f"top {params.get('top')} × {params.get('full_epochs')} steps. Dead from random starts: {n_dead_random}; "
               f"dead after the precursor: {n_dead_precursor}.")
    data = run.data or {}
    options = "".join(f"<option value=\"{esc(key)}\">{esc(title)}</option>" for key, title in SORT_KEYS.items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(f'map atlas — precursor {run.run_id}')}</title>
<style>{STYLE}</style></head><body>
<header><h1>{esc(f'Map atlas of {layer}')}</h1>
<p>{esc(summary)}</p>
<p>{esc(f"precursor run {run.run_id}; atlas run {atlas_run}; model {run.model_hash}; data {data.get('name')} ({data.get('n_test')} test images, checksum {data.get('checksum')}); written {time.strftime('%Y-%m-%d %H:%M')}")}</p>
<p>Loss = mean post-ReLU activation of the map; ratio = loss ÷ the map's strongest mean activation over the test set; entropy of the CNN's softmax on the precursor OIP in nats (ln 10 ≈ 2.30 = no idea).</p>
</header>
<div class="controls">
<label>sort by <select id="sort">{options}</select></label>
<label><select id="order"><option value="asc">ascending</option><option value="desc">descending</option></select></label>
<label><input type="checkbox" id="dead-only"> only maps random starts leave dead ({n_dead_random})</label>
<span><span id="shown">{len(rows)}</span> of {len(rows)} maps shown</span>
</div>
<main id="cards">{cards}</main>
{''.join(extra_section(extra, files) for extra in extras)}
<script>{SCRIPT}</script>
</body></html>
"""
    files["index.html"] = page.encode()
    return files
