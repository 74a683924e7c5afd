// The one way tests pick a port for a server they start themselves (a relay, redis-server,
// HAProxy): ask the kernel for a free 127.0.0.1 port, then let it go. Another process may take it
// before the server binds it; those that spawn a child retry on "address in use".
import { type AddressInfo, createServer } from 'node:net';

/** A 127.0.0.1 port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}
