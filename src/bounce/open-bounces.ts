// Delivery reports and the suppression list, put together for boot: the
// keys (from the outbox store's own, once it answers: a store that is down
// at boot delays them, and until then return paths are EMAIL_FROM and the
// list checks nothing, which the log says), the desk, the simulator, the
// gate every send passes, and the listener when BOUNCE_PORT is set.
import type { Logger } from 'winston';
import type { BounceSettings } from './settings.js';
import type { OutboxStore } from '../outbox/store.js';
import { BounceDesk, type ReportCounter } from './desk.js';
import { startBounceListener, type BounceListener } from './listener.js';
import { RecipientGate } from './recipient-gate.js';
import { BounceKeys, type ReturnPaths } from './return-path.js';
import { Simulator } from './simulator.js';
import { SuppressionList } from './suppression-list.js';
import { SyncMail } from './sync-mail.js';

export interface Bounces {
  readonly list: SuppressionList;
  readonly desk: BounceDesk;
  readonly simulator: Simulator;
  readonly gate: RecipientGate;
  readonly syncMail: SyncMail;
  /** the listener's port (BOUNCE_PORT 0 picks one) */
  readonly listenerPort: number | undefined;
  close(): Promise<void>;
}

export async function openBounces(settings: BounceSettings, store: OutboxStore, paths: ReturnPaths, metrics: ReportCounter & { suppressed(): void }, log: Logger): Promise<Bounces> {
  const bounceLog = log.child({ component: 'bounces' });
  const list = new SuppressionList(store, bounceLog);
  const desk = new BounceDesk(store, paths, metrics, bounceLog);
  const simulator = new Simulator(desk, paths, bounceLog);
  let stopHealth: (() => void) | undefined;
  const keyed = async (): Promise<boolean> => {
    if (paths.ready !== undefined) return true;
    try {
      const keys = new BounceKeys(await store.cursorKey());
      await list.load(keys);
      paths.use(keys);
      return true;
    } catch (err) {
      bounceLog.warn('the outbox store has not answered: until it does, return paths are EMAIL_FROM and the suppression list is not checked', { reason: (err as Error).message });
      return false;
    }
  };
  if (!(await keyed())) {
    stopHealth = store.onHealth((health) => {
      if (health.up) void keyed().then((ok) => ok && stopHealth?.());
    });
  }
  let listener: BounceListener | undefined;
  if (settings.listener !== undefined && settings.domain !== undefined) {
    listener = await startBounceListener(settings.domain, settings.listener, desk, bounceLog);
    bounceLog.info('bounce listener up', { port: listener.port, domain: settings.domain });
  }
  const syncMail = new SyncMail(store, paths, simulator, bounceLog);
  return {
    list,
    desk,
    simulator,
    gate: new RecipientGate(list, () => metrics.suppressed()),
    syncMail,
    listenerPort: listener?.port,
    close: async () => {
      stopHealth?.();
      await syncMail.flush();
      simulator.close();
      list.close();
      await listener?.close();
    },
  };
}
