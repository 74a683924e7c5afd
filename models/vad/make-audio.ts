/**
 * Makes the labelled audio fixture of the `vad` app: a few sentences spoken by espeak-ng, placed
 * between stretches of near-silence and of low noise, at 16 kHz mono, with one label per
 * 512-sample frame. Writes models/vad/speech.wav and models/vad/speech.labels.json.
 *
 *   apt-get install -y espeak-ng        # not needed in CI: the outputs are committed
 *   npx tsx models/vad/make-audio.ts
 *
 * Labels: espeak's output is exactly silent between phrases, so within each sentence the samples
 * whose 10 ms RMS is over 1e-3 (−60 dBFS) are "voiced"; voiced stretches closer than 300 ms are
 * joined (stop closures and word gaps are part of speech), and the result is the sentence's
 * speech spans. A frame is labelled speech when at least half of its samples lie in a span.
 * Everything outside the sentences is noise or silence, labelled not speech.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mulberry32 } from '../digits/mlp';
import {
  FIXTURE_LABELS,
  FIXTURE_WAV,
  FRAME,
  type Labels,
  readWav,
  SAMPLE_RATE,
  writeWav,
} from './vad';

/** What is spoken, by which espeak-ng voice and speed, after how many seconds of what. */
const SCRIPT: { gap: number; noise: number; text: string; voice: string; wpm: number }[] = [
  { gap: 1.0, noise: 0.0005, text: 'Brume runs models in the browser.', voice: 'en-us', wpm: 150 },
  {
    gap: 1.3,
    noise: 0.01,
    text: 'Each chunk of audio may land on another node.',
    voice: 'en-gb+f3',
    wpm: 160,
  },
  {
    gap: 0.9,
    noise: 0.0005,
    text: 'The state travels with the context.',
    voice: 'en-gb-x-rp',
    wpm: 140,
  },
  { gap: 1.6, noise: 0.01, text: 'Seven, four, one, nine.', voice: 'en-us+m3', wpm: 130 },
];
/** Noise and silence after the last sentence. */
const TAIL = { seconds: 1.2, noise: 0.01 };
/** Peak amplitude of every sentence. */
const PEAK = 0.5;
/** Floor of white noise under everything (RMS), so that no stretch is digital silence. */
const FLOOR = 0.0005;
const VOICED_RMS = 1e-3;
const JOIN_GAP_S = 0.3;
const SEED = 16_000;

/** Windowed-sinc resampling (Blackman window, 32 zero crossings, cut-off at 0.45·min rate). */
function resample(x: Float32Array, from: number, to: number): Float32Array {
  const n = Math.floor((x.length * to) / from);
  const out = new Float32Array(n);
  const cutoff = (0.45 * Math.min(from, to)) / from; // cycles per input sample
  const half = 16 / (2 * cutoff); // input samples each side: 16 zero crossings
  for (let i = 0; i < n; i++) {
    const t = (i * from) / to;
    const lo = Math.max(0, Math.ceil(t - half));
    const hi = Math.min(x.length - 1, Math.floor(t + half));
    let sum = 0;
    for (let k = lo; k <= hi; k++) {
      const d = t - k;
      const arg = 2 * cutoff * d;
      const sinc = d === 0 ? 1 : Math.sin(Math.PI * arg) / (Math.PI * arg);
      const w =
        0.42 + 0.5 * Math.cos((Math.PI * d) / half) + 0.08 * Math.cos((2 * Math.PI * d) / half);
      sum += x[k]! * 2 * cutoff * sinc * w;
    }
    out[i] = sum;
  }
  return out;
}

/** The spans of `x` (sample indices, end exclusive) that are speech, as the module doc says. */
function speechSpans(x: Float32Array): [number, number][] {
  const win = SAMPLE_RATE / 100;
  const spans: [number, number][] = [];
  for (let at = 0; at < x.length; at += win) {
    let sum = 0;
    const end = Math.min(x.length, at + win);
    for (let i = at; i < end; i++) sum += x[i]! * x[i]!;
    if (Math.sqrt(sum / (end - at)) <= VOICED_RMS) continue;
    const last = spans[spans.length - 1];
    if (last && at - last[1] < JOIN_GAP_S * SAMPLE_RATE) last[1] = end;
    else spans.push([at, end]);
  }
  return spans;
}

function speak(text: string, voice: string, wpm: number, dir: string): Float32Array {
  const file = join(dir, 'say.wav');
  execFileSync('espeak-ng', ['-v', voice, '-s', String(wpm), '-w', file, text]);
  const { samples, sampleRate } = readWav(readFileSync(file));
  const x = sampleRate === SAMPLE_RATE ? samples : resample(samples, sampleRate, SAMPLE_RATE);
  let peak = 0;
  for (const v of x) peak = Math.max(peak, Math.abs(v));
  for (let i = 0; i < x.length; i++) x[i] = (x[i]! * PEAK) / peak;
  return x;
}

function main(): void {
  const version = execFileSync('espeak-ng', ['--version'], { encoding: 'utf8' }).trim();
  const dir = mkdtempSync(join(tmpdir(), 'brume-vad-'));
  const rand = mulberry32(SEED);
  // Uniform noise of RMS `rms`: uniform on [-a, a] has RMS a/√3.
  const noise = (n: number, rms: number) =>
    Float32Array.from({ length: n }, () => (rand() * 2 - 1) * rms * Math.sqrt(3));
  const parts: Float32Array[] = [];
  const segments: Labels['segments'] = [];
  let at = 0;
  try {
    for (const s of SCRIPT) {
      const gap = noise(Math.round(s.gap * SAMPLE_RATE), s.noise);
      parts.push(gap);
      at += gap.length;
      const voice = speak(s.text, s.voice, s.wpm, dir);
      const spans = speechSpans(voice).map(([a, b]): [number, number] => [a + at, b + at]);
      segments.push({
        text: s.text,
        voice: `${s.voice}, ${s.wpm} wpm`,
        start: at / SAMPLE_RATE,
        end: (at + voice.length) / SAMPLE_RATE,
        speech: spans.map(([a, b]) => [a / SAMPLE_RATE, b / SAMPLE_RATE]),
      });
      parts.push(voice);
      at += voice.length;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // Pad the tail so the whole ends on a frame boundary.
  const tail = Math.ceil((at + TAIL.seconds * SAMPLE_RATE) / FRAME) * FRAME - at;
  parts.push(noise(tail, TAIL.noise));
  at += tail;

  const audio = new Float32Array(at);
  let o = 0;
  for (const p of parts) {
    audio.set(p, o);
    o += p.length;
  }
  const floor = noise(audio.length, FLOOR);
  for (let i = 0; i < audio.length; i++) audio[i] = audio[i]! + floor[i]!;

  const inSpeech = new Uint8Array(audio.length);
  for (const seg of segments) {
    for (const [a, b] of seg.speech) {
      inSpeech.fill(1, Math.round(a * SAMPLE_RATE), Math.round(b * SAMPLE_RATE));
    }
  }
  const frames = audio.length / FRAME;
  let labels = '';
  for (let f = 0; f < frames; f++) {
    let n = 0;
    for (let i = f * FRAME; i < (f + 1) * FRAME; i++) n += inSpeech[i]!;
    labels += n * 2 >= FRAME ? '1' : '0';
  }

  const wav = writeWav(audio, SAMPLE_RATE);
  writeFileSync(FIXTURE_WAV, wav);
  const meta: Labels = {
    sampleRate: SAMPLE_RATE,
    frameSamples: FRAME,
    frames,
    made: `npx tsx models/vad/make-audio.ts with ${version.split('\n')[0]}`,
    rule: 'speech: 10 ms windows of a sentence with RMS > 1e-3, gaps < 300 ms joined; a frame is speech when ≥ half its samples are',
    segments,
    labels,
  };
  writeFileSync(FIXTURE_LABELS, `${JSON.stringify(meta, null, 2)}\n`);
  const speech = labels.split('').filter((c) => c === '1').length;
  console.log(
    `speech.wav: ${(audio.length / SAMPLE_RATE).toFixed(2)} s, ${wav.length} bytes; ` +
      `${frames} frames, ${speech} labelled speech`,
  );
}

main();
