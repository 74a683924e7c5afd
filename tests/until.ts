// The one way tests wait: poll a condition until it holds, never sleep a fixed time as a barrier.
// A busy machine makes the wait longer, never the test wrong.

/**
 * Resolves with the first truthy value `check` gives, polling every `everyMs`; throws naming
 * `what` after `timeoutMs`.
 * @example const welcome = await until(() => node.frames.find((f) => f.t === 'welcome'), 'a welcome');
 */
export async function until<T>(
  check: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  what: string,
  timeoutMs = 20_000,
  everyMs = 10,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
