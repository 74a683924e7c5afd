/**
 * Which parts of a catch-up a node takes (PROTOCOL.md §5.5), as a small state machine with no I/O:
 * syncs are numbered (never reset) and the relay echoes the number in every part of its answer; a
 * part is applied only if every part before it came, and an answer to an older sync than one
 * already answered is not trusted. The node asks again (`resync`) when a catch-up is incomplete.
 * @example const parts = new CatchUpParts();  send({ t: 'ctx-sync', id: parts.next(), ... });
 *          switch (parts.accept(frame)) { case 'apply': ...; case 'resync': sync(); }
 */

/** What a catch-up part carries that decides whether it is taken. */
export interface CatchUpPart {
  id?: number | undefined;
  part?: number | undefined;
  more?: true | undefined;
}

export type PartVerdict = 'apply' | 'skip' | 'resync';

export class CatchUpParts {
  /** The number of the latest sync sent. */
  private syncId = 0;
  /** The catch-up in parts under way: its sync's number and the part expected next. */
  private partial: { id: number | undefined; next: number } | undefined;
  /** The newest sync a catch-up has come for. */
  private answered = 0;

  /** Numbers a new sync. */
  next(): number {
    return ++this.syncId;
  }

  /** The number of the latest sync sent. */
  get latest(): number {
    return this.syncId;
  }

  /** The link dropped: a catch-up in parts under way will not be finished. */
  reset(): void {
    this.partial = undefined;
  }

  /**
   * `apply` this part's ops, `skip` it, or `resync` (skip it and ask again). Each part's ops
   * apply as they come; the caller finishes the catch-up (cursor, held apps, waiters) only with
   * an applied last part.
   */
  accept(frame: CatchUpPart): PartVerdict {
    const part = frame.part ?? 0;
    if (frame.id !== undefined && frame.id < this.answered) {
      // The answer to an older sync, after a newer one's: its cursor may pass changes of apps
      // this node has started since (and a relay that took the syncs out of order keeps an old
      // list of them): ask again rather than trust it.
      return frame.more ? 'skip' : 'resync';
    }
    if (frame.id !== undefined) this.answered = frame.id;
    const p = this.partial;
    if (part > 0 && !(p && p.id === frame.id && p.next === part)) {
      const mine = p !== undefined && p.id === frame.id;
      if (mine && part < p.next) return 'skip'; // a duplicate
      // One went missing: this catch-up is incomplete (-1: take no more of it); its last part
      // asks again.
      if (mine) p.next = -1;
      if (frame.more) return 'skip';
      this.partial = undefined;
      return 'resync';
    }
    this.partial = frame.more ? { id: frame.id, next: part + 1 } : undefined;
    return 'apply';
  }

  /** The sync a last part answers: a relay that does not echo numbers answers each in turn. */
  answers(frame: CatchUpPart): number {
    return frame.id ?? this.syncId;
  }
}
