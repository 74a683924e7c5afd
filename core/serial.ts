/**
 * Runs async work one piece at a time, in call order: each starts once the one before has
 * settled, whether it succeeded or failed, and each caller gets its own piece's result or error.
 * @example const oneAtATime = serial();  await oneAtATime(() => writeList(next));
 */
export function serial(): <T>(work: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return (work) => {
    const run = tail.then(work);
    tail = run.catch(() => undefined); // the caller gets the error through `run`
    return run;
  };
}
