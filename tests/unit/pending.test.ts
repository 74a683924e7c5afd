import { describe, expect, it } from 'vitest';
import {
  AppError,
  BrumeError,
  BundleIntegrityError,
  DisconnectedError,
  errorTable,
  fromWire,
  httpStatus,
  InternalError,
  isErrorCode,
  QosError,
  TimeoutError,
  toWire,
} from '../../core/errors';
import { Pending } from '../../core/pending';

describe('Pending', () => {
  const table = (timeoutMs = 0) => {
    const counted: string[] = [];
    const pending = new Pending<string, string>({
      timeoutMs,
      timeout: (meta, id) => new TimeoutError(`${meta} (${id}) timed out`),
      added: (m) => counted.push(`+${m}`),
      removed: (m) => counted.push(`-${m}`),
    });
    return { pending, counted };
  };

  it('answers each request once: a late settle or fail finds nothing', async () => {
    const { pending, counted } = table();
    const a = pending.open('a');
    const b = pending.open('b');
    expect([a.id, b.id]).toEqual([1, 2]);
    expect(pending.settle(a.id, 'A')).toBe(true);
    expect(pending.settle(a.id, 'again')).toBe(false);
    expect(pending.fail(b.id, new DisconnectedError('gone'))).toBe(true);
    expect(pending.settle(b.id, 'late')).toBe(false);
    await expect(a.answer).resolves.toBe('A');
    await expect(b.answer).rejects.toBeInstanceOf(DisconnectedError);
    expect(pending.size).toBe(0);
    expect(counted).toEqual(['+a', '+b', '-a', '-b']);
  });

  it('fails a request whose time is up with the named error, and drops its late answer', async () => {
    const { pending } = table(5);
    const r = pending.open('slow');
    await expect(r.answer).rejects.toMatchObject({
      code: 'E_TIMEOUT',
      message: 'slow (1) timed out',
    });
    expect(pending.settle(r.id, 'late')).toBe(false);
  });

  it('fails all on disconnect, and take removes without answering', async () => {
    const { pending, counted } = table(60_000);
    const rs = [pending.open('x'), pending.open('y'), pending.open('z')];
    expect(pending.take(rs[1]!.id)).toBe('y');
    expect(pending.get(rs[0]!.id)).toBe('x');
    pending.failAll(new DisconnectedError('link closed'));
    await expect(rs[0]!.answer).rejects.toMatchObject({ code: 'E_DISCONNECTED' });
    await expect(rs[2]!.answer).rejects.toMatchObject({ code: 'E_DISCONNECTED' });
    expect(pending.size).toBe(0);
    expect(counted.filter((c) => c.startsWith('-'))).toEqual(['-y', '-x', '-z']);
  });
});

describe('the error table', () => {
  it('rebuilds every code as its own class with its status, across the wire', () => {
    for (const [code, { status, revive }] of Object.entries(errorTable)) {
      const e = revive({ code, message: `m ${code}` });
      expect(e).toBeInstanceOf(BrumeError);
      expect(e.code).toBe(code);
      const back = fromWire(JSON.parse(JSON.stringify(toWire(e))));
      expect(back.constructor).toBe(e.constructor);
      expect(back.message).toBe(`m ${code}`);
      expect(httpStatus(back)).toBe(status);
      expect(isErrorCode(code)).toBe(true);
    }
  });

  it('keeps the details a class carries', () => {
    const q = fromWire(toWire(new QosError('accuracy', 0.9, 'too low')));
    expect(q).toMatchObject({ constraint: 'accuracy', best: 0.9, code: 'E_QOS' });
    const i = fromWire(toWire(new BundleIntegrityError('model.onnx', 'sha256 differs')));
    expect(i).toMatchObject({ file: 'model.onnx', code: 'E_INTEGRITY' });
  });

  it("keeps an application's own code, and makes anything else internal", () => {
    const app = fromWire({ code: 'E_NO_INK', message: 'blank pad' });
    expect(app).toBeInstanceOf(AppError);
    expect(app).toMatchObject({ code: 'E_APP', appCode: 'E_NO_INK' });
    expect(toWire(app)).toEqual({ code: 'E_APP', message: 'blank pad', appCode: 'E_NO_INK' });
    expect(fromWire(new Error('boom'))).toBeInstanceOf(InternalError);
    expect(httpStatus(new Error('boom'))).toBe(500);
    expect(toWire('x'.repeat(5000)).message).toHaveLength(4096);
  });
});
