/**
 * `brume token`: where a data directory keeps the relay's admin token. The token is shown only
 * when asked for (--reveal): a terminal's scrollback, a screen share or a CI log keep what is
 * printed. --rotate makes a new one (the relay takes it when restarted).
 */
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadAdmin } from '../admin';
import { type Invocation, noPositionals } from './args';

export async function token({ positionals, values, flag }: Invocation): Promise<number> {
  noPositionals(positionals);
  const data = resolve(flag('data') ?? process.env.BRUME_DATA ?? '.brume');
  const file = join(data, 'admin-token');
  if (values.rotate) await rm(file, { force: true });
  // Reads the token, or makes one (and the directory, 0700) as a first start would.
  const admin = await loadAdmin(data);
  if (values.reveal) {
    console.log(admin.token);
  } else {
    console.log(`the admin token ${admin.created ? 'was made and saved' : 'is'} in ${file}`);
    console.log(`print it with: brume token --data ${data} --reveal`);
  }
  if (values.rotate) console.error('new token written; restart the relay to use it');
  return 0;
}
