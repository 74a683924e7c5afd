// Detection post-processing: the detector's probability map → text boxes, after PaddleOCR's
// DBPostProcess with one documented simplification: a region's box is its axis-aligned bounding
// rectangle (PaddleOCR takes the rotated minimum-area rectangle), and its score is the mean
// probability over the region's own pixels (PaddleOCR: over that rectangle). models/ocr/README.md
// reports what the pipeline reaches with it.

/** A pixel is text when its probability exceeds this (PaddleOCR's `thresh`). */
export const THRESH: f32 = 0.3;
/** A region is kept when its mean probability reaches this (PaddleOCR's `box_thresh`). */
export const BOX_THRESH: f64 = 0.6;
/** The box grows by area × UNCLIP / perimeter on each side (PaddleOCR's `unclip_ratio`). */
export const UNCLIP: f64 = 1.5;
/** Regions with a side under this many map pixels are noise (PaddleOCR's `min_size`). */
export const MIN_SIZE: i32 = 3;

/** A box in map pixels: [x0, x1) × [y0, y1), with its score. */
export class Box {
  constructor(
    public x0: f64,
    public y0: f64,
    public x1: f64,
    public y1: f64,
    public score: f64,
  ) {}
}

/**
 * The 8-connected regions of `map[y · stride + x] > THRESH` within `width × height`, as unclipped
 * boxes in raster order of their first pixel, at most `limit` of them (`found` counts all kept).
 */
export class Regions {
  boxes: Box[] = [];
  found: i32 = 0;

  constructor(map: Float32Array, stride: i32, width: i32, height: i32, limit: i32) {
    const n = width * height;
    const seen = new Uint8Array(n);
    const queue = new Int32Array(n);
    for (let start = 0; start < n; start++) {
      const sx = start % width;
      const sy = start / width;
      if (unchecked(seen[start]) || unchecked(map[sy * stride + sx]) <= THRESH) continue;
      // Breadth-first fill of the region; the queue never holds a pixel twice.
      let head = 0;
      let tail = 0;
      unchecked((queue[tail++] = start));
      unchecked((seen[start] = 1));
      let x0 = sx;
      let x1 = sx;
      let y0 = sy;
      let y1 = sy;
      let sum: f64 = 0;
      while (head < tail) {
        const i = unchecked(queue[head++]);
        const x = i % width;
        const y = i / width;
        sum += f64(unchecked(map[y * stride + x]));
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y > y1) y1 = y;
        for (let dy = -1; dy <= 1; dy++) {
          const ny = y + dy;
          if (ny < 0 || ny >= height) continue;
          for (let dx = -1; dx <= 1; dx++) {
            const nx = x + dx;
            if (nx < 0 || nx >= width) continue;
            const j = ny * width + nx;
            if (unchecked(seen[j]) || unchecked(map[ny * stride + nx]) <= THRESH) continue;
            unchecked((seen[j] = 1));
            unchecked((queue[tail++] = j));
          }
        }
      }
      const score = sum / f64(tail);
      const w = x1 + 1 - x0;
      const h = y1 + 1 - y0;
      if (min(w, h) < MIN_SIZE || score < BOX_THRESH) continue;
      // Unclip: a rectangle offset by d grows by d on each side (its rounded corners aside).
      const d = (f64(w) * f64(h) * UNCLIP) / (2 * f64(w + h));
      if (f64(min(w, h)) + 2 * d < f64(MIN_SIZE + 2)) continue;
      this.found++;
      if (this.boxes.length < limit) {
        this.boxes.push(new Box(f64(x0) - d, f64(y0) - d, f64(x1 + 1) + d, f64(y1 + 1) + d, score));
      }
    }
  }
}
