/**
 * Job ids that sort by the time they were made (Snowflake-like), as fixed-width strings: 9 base-36
 * digits of the millisecond clock, 3 of a sequence within that millisecond, 12 random ones. Ids
 * compare as strings in the order they were made on one relay; the random part (62 bits) keeps
 * another relay's ids, and guesses, apart.
 * @example const ids = jobIds(); ids.next(); // '0mip3k2ql000x4f9a0b1c2d3'
 */
import { randomInt } from 'node:crypto';

export const JOB_ID = /^[0-9a-z]{24}$/;
export const isJobId = (id: string): boolean => JOB_ID.test(id);

const pad = (n: number, width: number) => n.toString(36).padStart(width, '0');
/** The most a 3-digit base-36 sequence holds in one millisecond. */
const MAX_SEQ = 36 ** 3 - 1;

/** A maker of ids; `now` is the clock (Date.now). Never goes backwards, even if the clock does. */
export function jobIds(now: () => number = Date.now) {
  let lastMs = 0;
  let seq = 0;
  return {
    next(): string {
      let ms = now();
      if (ms <= lastMs) {
        ms = lastMs;
        seq++;
        // A full millisecond borrows the next one: order before a true reading.
        if (seq > MAX_SEQ) {
          ms = lastMs + 1;
          seq = 0;
        }
      } else seq = 0;
      lastMs = ms;
      let random = '';
      for (let i = 0; i < 12; i++) random += randomInt(36).toString(36);
      return `${pad(ms, 9)}${pad(seq, 3)}${random}`;
    },
    /** Ids made from now on sort after `id` (a relay restarted with a clock set back). */
    after(id: string): void {
      const ms = Number.parseInt(id.slice(0, 9), 36);
      const s = Number.parseInt(id.slice(9, 12), 36);
      if (ms > lastMs || (ms === lastMs && s > seq)) {
        lastMs = ms;
        seq = s;
      }
    },
  };
}
