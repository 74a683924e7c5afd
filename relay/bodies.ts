/**
 * The bodies HTTP callers send, checked by schema so a refusal names the field and the rule:
 * `qos.accuracy must be at most 1 (got 1.5)`, `input is required`, `rpc must be a string`.
 * @example const { input, qos, rpc } = parseBody(callBody, req.body);
 */
import { z } from 'zod';
import { InputError } from '../core/errors';
import { describeIssues } from '../core/issues';
import { qosSchema } from '../core/protocol';

const rpc = z.string().max(64).optional();

/** POST /api/call/:app/:service */
// zod 4 requires a key typed z.unknown() (its value may be null): a missing one is "required".
export const callBody = z.object({ input: z.unknown(), qos: qosSchema.optional(), rpc });

/** POST /api/schedule/:app/:service */
export const scheduleBody = z.object({ qos: qosSchema.optional(), rpc });

/** PUT /api/context/:app/:key */
export const contextPutBody = z.object({
  value: z.unknown(),
  ttlMs: z
    .number()
    .positive()
    .max(2 ** 47)
    .optional(),
  // Kept so the route can say why it refuses one (private values are not written over HTTP).
  privacy: z.unknown().optional(),
  /** Keep the value at this site: never pushed to federated sites (relay/federation/). */
  local: z.boolean().optional(),
});

/**
 * Checks an HTTP body against `schema`; an InputError naming every bad field otherwise, then
 * `usage` (what to send).
 */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown, usage = ''): z.infer<T> {
  const r = schema.safeParse(body ?? {}, { reportInput: true });
  if (r.success) return r.data;
  const what = describeIssues(r.error, [], { whole: 'the body' });
  throw new InputError(usage ? `${what} (send ${usage} as JSON or MessagePack)` : what);
}
