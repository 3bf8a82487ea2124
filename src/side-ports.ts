// The ports beside the gRPC port, each only when configured: /metrics
// (METRICS_PORT), the inspector page (INSPECT_PORT, loopback only), and the
// bridge to a Stately inspector (INSPECT=stately). A port that cannot be
// had stops boot in the words of the configuration (exit 2). The inspector
// and the bridge are loaded only when asked for: their layout engine and
// WebSocket client are some 60 MB of a process that does not use them.
import type { Logger } from 'winston';
import type { Config } from './config.js';
import { MailroomError } from './errors.js';
import type { InspectionBus } from './inspect/bus.js';
import type { InspectorServer } from './inspect/server.js';
import { serveMetrics, type MetricsServer } from './metrics/http.js';
import type { PrometheusMetrics } from './metrics/metrics.js';

export interface SidePorts {
  readonly metricsPort: number | undefined;
  readonly inspectPort: number | undefined;
  close(): Promise<void>;
}

export async function openSidePorts(config: Config, prometheus: PrometheusMetrics | undefined, inspection: InspectionBus | undefined, log: Logger): Promise<SidePorts> {
  let metrics: MetricsServer | undefined;
  let inspector: InspectorServer | undefined;
  const close = async (): Promise<void> => {
    await metrics?.close();
    await inspector?.close();
  };
  try {
    if (prometheus !== undefined && config.metrics !== undefined) {
      metrics = await serveMetrics(prometheus.registry, config.metrics.host, config.metrics.port, log.child({ component: 'metrics' }));
      log.info(`metrics on http://${config.metrics.host}:${metrics.port}/metrics`);
    }
    if (inspection !== undefined && config.inspect?.port !== undefined) {
      const { serveInspector } = await import('./inspect/server.js');
      inspector = await serveInspector(inspection, config.inspect.port, log.child({ component: 'inspector' }), { maxClients: config.inspect.maxClients });
      log.info(`inspector on http://127.0.0.1:${inspector.port}/ (loopback only: ssh -L or kubectl port-forward to reach it)`);
    }
  } catch (err) {
    await close();
    const where = metrics === undefined && config.metrics !== undefined ? `METRICS_PORT=${config.metrics.port} on METRICS_HOST=${config.metrics.host}` : `INSPECT_PORT=${config.inspect?.port} on 127.0.0.1`;
    throw new MailroomError('ECONFIG', `invalid configuration:\n  ${where}: cannot listen (${(err as Error).message})`, { cause: err });
  }
  const stopBridge =
    inspection !== undefined && config.inspect?.statelyUrl !== undefined
      ? (await import('./inspect/stately.js')).bridgeToStately(inspection, config.inspect.statelyUrl, log.child({ component: 'inspector' }))
      : undefined;
  return {
    metricsPort: metrics?.port,
    inspectPort: inspector?.port,
    close: async () => {
      stopBridge?.();
      await close();
    },
  };
}
