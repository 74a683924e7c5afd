/**
 * One way to say what is wrong with an input that failed a zod schema, on every surface (manifests,
 * HTTP bodies, frames): each message starts with the field's path, e.g.
 * `qos.accuracy must be at most 1 (got 1.5)`. Parse with `{ reportInput: true }` to get the "got".
 * @example const r = qosSchema.safeParse(body.qos, { reportInput: true });
 *          if (!r.success) throw new InputError(describeIssues(r.error, ['qos']));
 */
import type { z } from 'zod';

/**
 * Every issue of `error` as one line each, joined by '; ' (at most `max`, then "and N more").
 * `root` is prefixed to every path (the field the schema checked); `whole` names the value itself
 * when an issue has no path.
 */
export function describeIssues(
  error: z.ZodError,
  root: PropertyKey[] = [],
  { max = 8, whole = 'input' }: { max?: number; whole?: string } = {},
): string {
  const messages = error.issues.flatMap((i) => describeIssue(i, root, whole));
  const shown = messages.slice(0, max);
  if (messages.length > shown.length) shown.push(`and ${messages.length - shown.length} more`);
  return shown.join('; ');
}

function describeIssue(issue: z.core.$ZodIssue, root: PropertyKey[], whole: string): string[] {
  const at = (extra: PropertyKey[] = []) => formatPath([...root, ...issue.path, ...extra]) || whole;
  // A message of the schema's own reads on from the field's name when it is a predicate.
  const says = (where: string, message: string) =>
    /^(must|is|are|has|needs) /.test(message) ? `${where} ${message}` : `${where}: ${message}`;
  const absent = 'input' in issue && issue.input === undefined;
  if (absent && ['invalid_type', 'invalid_value', 'invalid_format'].includes(issue.code)) {
    return [`${at()} is required`];
  }
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((k) => `${at([k])} is not a known field`);
    case 'invalid_key':
      return [`${at()} is not a valid name: ${issue.issues[0]?.message ?? 'not allowed'}`];
    case 'invalid_type':
      if (issue.expected === 'int')
        return [`${at()} must be an integer (got ${show(issue.input)})`];
      return [`${at()} must be ${article(issue.expected)} (got ${typeName(issue.input)})`];
    case 'too_big':
    case 'too_small': {
      const big = issue.code === 'too_big';
      const bound = big ? issue.maximum : issue.minimum;
      if (issue.origin === 'number' || issue.origin === 'int') {
        const rel = big
          ? issue.inclusive
            ? 'at most'
            : 'less than'
          : issue.inclusive
            ? 'at least'
            : 'more than';
        return [`${at()} must be ${rel} ${bound} (got ${show(issue.input)})`];
      }
      // A message given in the schema says it better than the generic one.
      if (!/^Too (small|big)/.test(issue.message)) return [says(at(), issue.message)];
      const unit = issue.origin === 'string' ? 'characters' : 'items';
      return [`${at()} must have ${big ? 'at most' : 'at least'} ${bound} ${unit}`];
    }
    case 'invalid_value':
      return [`${at()} must be ${oneOf(issue.values)} (got ${show(issue.input)})`];
    case 'invalid_union':
      if ('options' in issue && issue.options) return [`${at()} must be ${oneOf(issue.options)}`];
      return [says(at(), issue.message)];
    default:
      return [says(at(), issue.message)];
  }
}

const SIMPLE_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** `['services', 'model', 'inputs', 0]` → `services.model.inputs[0]`; odd keys get quoted. */
export function formatPath(path: PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (SIMPLE_KEY.test(String(key))) out += out ? `.${String(key)}` : String(key);
    else out += `[${JSON.stringify(String(key).slice(0, 64))}]`;
  }
  return out;
}

/** What a value is, for messages: `an object`, `number 5`, `bytes`. */
export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return 'bytes';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${show(v)}`;
}

function oneOf(values: readonly unknown[]): string {
  const shown = values.slice(0, 16).map((v) => show(v, true));
  return shown.length > 2 ? `one of ${shown.join(', ')}` : shown.join(' or ');
}

function article(t: string): string {
  return t === 'object' || t === 'array' ? `an ${t}` : `a ${t}`;
}

/** A value as it can be quoted in a message: short, whatever was sent. */
export function show(v: unknown, json = false): string {
  let s: string;
  if (typeof v === 'string' || json) {
    try {
      s = JSON.stringify(v) ?? String(v);
    } catch {
      s = String(v);
    }
  } else s = typeof v === 'object' && v !== null ? typeName(v) : String(v);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}
