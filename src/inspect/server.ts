// The built-in inspector: an HTTP server on 127.0.0.1 only (INSPECT_PORT),
// serving a page that needs nothing from outside: the page's script (built
// from page/), each machine's chart as SVG (rendered here by chart.ts), the
// live records as Server-Sent Events in batches, a redacted context on
// request, and the ring as JSONL for export. A browser that cannot keep up
// is dropped, not buffered for. Requests naming another host are refused,
// so a web page cannot reach it through DNS rebinding, and so are requests
// a page of another origin makes (its Origin header says so). At most
// INSPECT_MAX_CLIENTS streams and two exports at once; the rest get 503.
// Each batch is serialised once, however many streams take it.
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'winston';
import { drawChart } from './machines.js';
import type { InspectionBus } from './bus.js';
import { PAGE_HTML } from './page-html.js';

const SCRIPT = new URL('../../page/inspector.js', import.meta.url);
/** a browser this far behind is dropped */
const MAX_PENDING_BYTES = 4 * 1_048_576;
/** exports being written at once (each holds the ring's text while it goes out) */
const MAX_EXPORTS = 2;

export interface InspectorServer {
  readonly port: number;
  close(): Promise<void>;
}

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'",
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
};

export interface InspectorLimits {
  /** streams open at once (INSPECT_MAX_CLIENTS) */
  readonly maxClients: number;
}

export function serveInspector(bus: InspectionBus, port: number, log: Logger, limits: InspectorLimits = { maxClients: 8 }): Promise<InspectorServer> {
  const charts = new Map<string, Promise<string>>();
  const streams = new Set<ServerResponse>();
  let exports = 0;
  let unsubscribe: (() => void) | undefined;
  let bound = 0;

  const send = (res: ServerResponse, status: number, type: string, body: string | Buffer): void => {
    res.writeHead(status, { 'content-type': type, ...SECURITY_HEADERS }).end(body);
  };

  /** One subscription for every stream: a batch is serialised once, then written to each. */
  const fanOut = (records: readonly unknown[]): void => {
    const frame = `data: ${JSON.stringify(records)}\n\n`;
    for (const res of streams) {
      if (res.writableLength > MAX_PENDING_BYTES) {
        log.warn('inspector: a browser fell behind and was dropped', { pendingBytes: res.writableLength });
        res.destroy();
        continue;
      }
      res.write(frame);
    }
  };

  const stream = (req: IncomingMessage, res: ServerResponse): void => {
    if (streams.size >= limits.maxClients) {
      send(res, 503, 'text/plain', `the inspector serves ${limits.maxClients} pages at once (INSPECT_MAX_CLIENTS)\n`);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', connection: 'keep-alive', ...SECURITY_HEADERS });
    res.write(`event: hello\ndata: ${JSON.stringify(bus.hello())}\n\n`);
    streams.add(res);
    unsubscribe ??= bus.subscribe(fanOut);
    const end = (): void => {
      streams.delete(res);
      if (streams.size === 0) {
        unsubscribe?.();
        unsubscribe = undefined;
      }
    };
    req.on('close', end);
    res.on('close', end);
  };

  /** The ring as JSONL, written line by line as the browser takes it. */
  const exportRing = (res: ServerResponse): void => {
    if (exports >= MAX_EXPORTS) {
      send(res, 503, 'text/plain', `${MAX_EXPORTS} exports are under way; try again in a moment\n`);
      return;
    }
    exports++;
    const header = { kind: 'header', exportedAt: new Date().toISOString(), machines: bus.hello().machines, actors: bus.actors() };
    const records = bus.records();
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'content-disposition': 'attachment; filename="mailroom-events.jsonl"', ...SECURITY_HEADERS });
    let i = -1;
    const more = (): void => {
      while (i < records.length) {
        const line = `${JSON.stringify(i < 0 ? header : records[i])}\n`;
        i++;
        if (!res.write(line)) {
          res.once('drain', more);
          return;
        }
      }
      res.end();
    };
    res.once('close', () => {
      exports--;
      records.length = 0;
    });
    more();
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const host = req.headers.host ?? '';
    if (host !== `127.0.0.1:${bound}` && host !== `localhost:${bound}`) {
      send(res, 403, 'text/plain', 'the inspector answers requests for 127.0.0.1 and localhost only\n');
      return;
    }
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://127.0.0.1:${bound}` && origin !== `http://localhost:${bound}`) {
      send(res, 403, 'text/plain', 'the inspector answers its own page only\n');
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
    if (url.pathname === '/events.jsonl') return exportRing(res);
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
            unsubscribe?.();
            for (const res of streams) res.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
