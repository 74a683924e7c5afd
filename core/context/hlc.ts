/**
 * Hybrid logical clocks: wall time when clocks agree, a counter when they do not, the node id as
 * the last tie-break. Every write carries a stamp; the greater stamp wins everywhere, so replicas
 * that saw the same writes in any order hold the same value.
 * @example const clock = new Clock('a1b2…'); const s = clock.tick(); clock.receive(remoteStamp);
 */
import { ClockError } from '../errors';

export interface Stamp {
  /** Milliseconds since the epoch, by the writer's clock as corrected by what it has seen. */
  wall: number;
  count: number;
  node: string;
}

export function compareStamp(a: Stamp, b: Stamp): number {
  return a.wall - b.wall || a.count - b.count || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0);
}

export class Clock {
  private wall = 0;
  private count = 0;

  constructor(
    readonly node: string,
    private readonly now: () => number = Date.now,
    /** A remote stamp further ahead than this is refused rather than dragging the clock along. */
    private readonly maxDriftMs = 60_000,
  ) {}

  /** A stamp for a local write: after every stamp this clock has made or seen. */
  tick(): Stamp {
    const t = this.now();
    if (t > this.wall) {
      this.wall = t;
      this.count = 0;
    } else this.count++;
    return { wall: this.wall, count: this.count, node: this.node };
  }

  /** Throws E_CLOCK when `s` is further ahead than this clock takes; changes nothing. */
  check(s: Stamp): void {
    const t = this.now();
    if (s.wall > t + this.maxDriftMs) {
      throw new ClockError(
        `a stamp from ${s.node.slice(0, 8)} is ${s.wall - t} ms ahead of this clock (limit ${this.maxDriftMs} ms)`,
      );
    }
  }

  /** Takes in a stamp from elsewhere, so this clock's next stamp comes after it. */
  receive(s: Stamp): void {
    this.check(s);
    if (s.wall > this.wall) {
      this.wall = s.wall;
      this.count = s.count;
    } else if (s.wall === this.wall && s.count > this.count) this.count = s.count;
  }
}
