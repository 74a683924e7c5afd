/**
 * Work on a key (a node's id) done at most once per period: asked again within it, it is done
 * once more at the period's end (so what changed last is still acted on), never more than one
 * pending per key. Keys are forgotten with `forget` (a node lost), so the maps stay bounded by
 * the keys alive.
 * @example const reviews = oncePer(2000, (node) => review(node)); reviews.ask(id); reviews.forget(id);
 */
export function oncePer(periodMs: number, work: (key: string) => boolean) {
  /** When each key's work was last done (performance.now()), and the timers of work pending. */
  const done = new Map<string, number>();
  const pending = new Map<string, ReturnType<typeof setTimeout>>();
  function ask(key: string): void {
    if (pending.has(key)) return;
    const now = performance.now();
    const last = done.get(key);
    if (last !== undefined && now - last < periodMs) {
      const timer = setTimeout(
        () => {
          pending.delete(key);
          ask(key);
        },
        periodMs - (now - last),
      );
      timer.unref?.();
      pending.set(key, timer);
      return;
    }
    // `work` answers false when there was nothing to do: no period starts then.
    if (work(key)) done.set(key, now);
  }
  return {
    ask,
    forget(key: string): void {
      clearTimeout(pending.get(key));
      pending.delete(key);
      done.delete(key);
    },
  };
}
