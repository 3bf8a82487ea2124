// The built-in inspector: an HTTP server on 127.0.0.1 only (INSPECT_PORT),
// serving a page that needs nothing from outside: the page's script (built
// from page/), each machine's chart as SVG (rendered here by chart.ts), the
// live records as Server-Sent Events in batches, a redacted context on
// request, and the ring as JSONL for export. A browser that cannot keep up
// is dropped, not buffered for. Requests naming another host are refused,
// so a web page cannot reach it through DNS rebinding.
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'winston';
import { drawChart } from './charts.js';
import type { InspectionBus } from './bus.js';
import { PAGE_HTML } from './page-html.js';

const SCRIPT = new URL('../../page/inspector.js', import.meta.url);
/** a browser this far behind is dropped */
const MAX_PENDING_BYTES = 4 * 1_048_576;

export interface InspectorServer {
  readonly port: number;
  close(): Promise<void>;
}

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'",
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
};

export function serveInspector(bus: InspectionBus, port: number, log: Logger): Promise<InspectorServer> {
  const charts = new Map<string, Promise<string>>();
  const streams = new Set<ServerResponse>();
  let bound = 0;

  const send = (res: ServerResponse, status: number, type: string, body: string | Buffer): void => {
    res.writeHead(status, { 'content-type': type, ...SECURITY_HEADERS }).end(body);
  };

  const stream = (req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(200, { 'content-type': 'text/event-stream', connection: 'keep-alive', ...SECURITY_HEADERS });
    res.write(`event: hello\ndata: ${JSON.stringify(bus.hello())}\n\n`);
    streams.add(res);
    const unsubscribe = bus.subscribe((records) => {
      if (res.writableLength > MAX_PENDING_BYTES) {
        log.warn('inspector: a browser fell behind and was dropped', { pendingBytes: res.writableLength });
        res.destroy();
        return;
      }
      res.write(`data: ${JSON.stringify(records)}\n\n`);
    });
    const end = (): void => {
      unsubscribe();
      streams.delete(res);
    };
    req.on('close', end);
    res.on('close', end);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const host = req.headers.host ?? '';
    if (host !== `127.0.0.1:${bound}` && host !== `localhost:${bound}`) {
      send(res, 403, 'text/plain', 'the inspector answers requests for 127.0.0.1 and localhost only\n');
      return;
    }
    const url = new URL(req.url ?? '/', `http://${host}`);
    if (req.method !== 'GET') {
      send(res, 405, 'text/plain', 'GET only\n');
      return;
    }
    if (url.pathname === '/') return send(res, 200, 'text/html; charset=utf-8', PAGE_HTML);
    if (url.pathname === '/inspector.js') return send(res, 200, 'text/javascript; charset=utf-8', await readFile(SCRIPT));
    if (url.pathname === '/stream') return stream(req, res);
    if (url.pathname === '/events.jsonl') {
      const header = { kind: 'header', exportedAt: new Date().toISOString(), machines: bus.hello().machines, actors: bus.actors() };
      const lines = [JSON.stringify(header), ...bus.records().map((r) => JSON.stringify(r))];
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'content-disposition': 'attachment; filename="mailroom-events.jsonl"', ...SECURITY_HEADERS });
      res.end(`${lines.join('\n')}\n`);
      return;
    }
    if (url.pathname === '/context') {
      const context = bus.context(url.searchParams.get('actor') ?? '');
      if (context === undefined) return send(res, 404, 'text/plain', 'no such live actor\n');
      return send(res, 200, 'application/json', JSON.stringify(context));
    }
    const chart = /^\/charts\/([\w.-]+)\.svg$/.exec(url.pathname);
    if (chart !== null) {
      const id = chart[1] as string;
      const machine = bus.machine(id);
      if (machine === undefined) return send(res, 404, 'text/plain', 'no such machine\n');
      let svg = charts.get(id);
      if (svg === undefined) {
        svg = drawChart(machine);
        charts.set(id, svg);
      }
      return send(res, 200, 'image/svg+xml', await svg);
    }
    send(res, 404, 'text/plain', 'not found\n');
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error('inspector request failed', { reason: (err as Error).message, stack: (err as Error).stack });
      if (!res.headersSent) send(res, 500, 'text/plain', 'inspector error\n');
      else res.destroy();
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // Always loopback: reach it from elsewhere through ssh -L or kubectl port-forward.
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      bound = (server.address() as AddressInfo).port;
      resolve({
        port: bound,
        close: () =>
          new Promise<void>((done) => {
            for (const res of streams) res.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
