// Recognition post-processing: CTC greedy decoding of PP-OCRv4's per-step class probabilities.
import { KEYS, KEY_COUNT } from "./keys";

/** Classes of the recognizer: blank, the keys, a space. */
export const CLASSES: i32 = KEY_COUNT + 2;

export class Decoded {
  constructor(
    public text: string,
    public confidence: f64,
  ) {}
}

/**
 * `probs` is [steps × CLASSES] (softmax per step): the most likely class per step, repeats merged
 * and blanks (class 0) dropped; confidence is the mean probability of the kept characters (0 if
 * none), as PaddleOCR's CTCLabelDecode computes it.
 */
export function decode(probs: Float32Array, steps: i32): Decoded {
  let text = "";
  let sum: f64 = 0;
  let kept = 0;
  let prev = -1;
  for (let t = 0; t < steps; t++) {
    const row = t * CLASSES;
    let best = 0;
    let p = unchecked(probs[row]);
    for (let c = 1; c < CLASSES; c++) {
      const q = unchecked(probs[row + c]);
      if (q > p) {
        p = q;
        best = c;
      }
    }
    if (best != 0 && best != prev) {
      text += best <= KEY_COUNT ? KEYS[best - 1] : " ";
      sum += f64(p);
      kept++;
    }
    prev = best;
  }
  return new Decoded(text, kept > 0 ? sum / f64(kept) : 0);
}
