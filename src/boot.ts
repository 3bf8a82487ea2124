// The composition root: configuration, logger, actors, servers. Nothing else
// wires real implementations together; tests call boot() with their own env
// (and, through `machines`, their own machine implementations). boot() reads
// as its steps: each opens one part, and the parts opened so far are closed
// again if a later one cannot be had.
import { Subject } from 'rxjs';
import { createActor, waitFor } from 'xstate';
import { loadConfig, type Config } from './config.js';
import { createLogger, type Logger } from './log.js';
import { startCaptureServer, type CaptureServer } from './capture/server.js';
import { supervisorMachine, type SupervisorActor } from './actors/supervisor.js';
import { otpMachine, type OtpActor } from './actors/otp.js';
import { poolView } from './actors/pool-view.js';
import { CodeHasher } from './otp/code.js';
import { InMemoryOtpStore } from './otp/memory-store.js';
import type { OtpStore } from './otp/store.js';
import type { MailJob } from './mail/job.js';
import { Mailer } from './mail/mailer.js';
import { Composer } from './mail/compose.js';
import type { DkimSigner } from './mail/dkim.js';
import { loadDkimKey } from './mail/dkim-key.js';
import { MemoryBudget } from './mail/memory-budget.js';
import { IdempotencyCache } from './mail/idempotency.js';
import { Outbox } from './outbox/outbox.js';
import type { OutboxStore } from './outbox/store.js';
import type { RedisLink } from './redis/client.js';
import type { SharedState } from './redis/shared-state.js';
import { MailroomError } from './errors.js';
import { missingV8Flags } from './runtime-flags.js';
import { Calls } from './rpc/calls.js';
import { CallerAccess } from './rpc/access.js';
import { InspectionBus } from './inspect/bus.js';
import { openSidePorts, type SidePorts } from './side-ports.js';
import { serveGrpc } from './serve-grpc.js';
import { ServiceHealth } from './rpc/health.js';
import { NO_METRICS, type ServiceMetrics } from './metrics/service-metrics.js';
import type { PrometheusMetrics } from './metrics/metrics.js';
import { GrpcListener } from './rpc/listener.js';
import { openBounces, type Bounces } from './bounce/open-bounces.js';
import { ReturnPaths } from './bounce/return-path.js';
import { tracingOn, tracingRelay } from './lib/tracing.js';
import { withTlsContext } from './smtp/tls.js';
import type * as grpc from '@grpc/grpc-js';

export interface Service {
  readonly config: Config;
  readonly port: number;
  readonly supervisor: SupervisorActor;
  readonly otp: OtpActor;
  readonly capture: CaptureServer | undefined;
  readonly health: ServiceHealth;
  /** the metrics endpoint's port, when METRICS_PORT is set */
  readonly metricsPort: number | undefined;
  /** the inspector's port, when INSPECT_PORT is set */
  readonly inspectPort: number | undefined;
  /** the bounce listener's port (BOUNCE_PORT 0 picks one); undefined: none */
  readonly bouncePort: number | undefined;
  /** the Redis connection, with REDIS_URL */
  readonly redis: RedisLink | undefined;
  readonly log: Logger;
  /**
   * Settles when a root actor (supervisor or OTP) failed. From that moment
   * every open call and every new one is answered INTERNAL; the process
   * is to exit non-zero so that an orchestrator restarts it.
   */
  readonly failed: Promise<Error>;
  /** Stop taking calls, drain within SHUTDOWN_TIMEOUT_SECONDS, close everything. */
  shutdown(): Promise<void>;
  /** SIGHUP: re-read what can be re-read, and say what it was. */
  reload(): void;
}

export interface BootOptions {
  /** replaces the logger built from LOG_LEVEL/LOG_FORMAT (tests silence it) */
  readonly log?: Logger;
  /** the machines to run instead of the real ones (tests provide failing implementations) */
  readonly machines?: { readonly supervisor?: typeof supervisorMachine; readonly otp?: typeof otpMachine };
  /** the OTP store to use instead of a fresh in-memory one (tests look into the one they gave) */
  readonly otpStore?: OtpStore;
  /** the clock of every expiry (OTP codes, idempotency windows, the outbox's times), epoch ms; tests move it instead of sleeping */
  readonly clock?: () => number;
}

/** Parts that are open, closed in reverse order if boot cannot finish (and by shutdown). */
type Closer = () => Promise<void> | void;

export async function boot(env: Readonly<Record<string, string | undefined>>, options: BootOptions = {}): Promise<Service> {
  const config = loadConfig(env);
  const log = options.log ?? createLogger(config.log);
  const now = options.clock ?? Date.now;
  const missing = missingV8Flags();
  if (missing.length > 0) log.warn(`started without ${missing.join(' ')}: expect 10-20% more CPU per mail (see src/runtime-flags.ts; npm start sets it)`);
  if (config.otp.returnCode) log.warn('OTP_RETURN_CODE=true: codes are returned to callers. This is for tests only, never production.');
  // Read before anything starts: certificates that do not load stop boot (exit 2).
  const access = new CallerAccess(config.auth, config, log);
  const dkimKey = config.mail.dkim === undefined ? undefined : loadDkimKey(config.mail.dkim, config.mail.from.address);
  const signer = dkimKey === undefined ? undefined : new (await import('./mail/dkim.js')).DkimSigner(dkimKey);
  const paths = new ReturnPaths(config.bounces.domain);
  const composer = new Composer(config.mail.from, config.mail.limits.maxMessageBytes, signer, paths);

  const opened: Closer[] = [];
  const unwind = async (): Promise<void> => {
    for (const close of opened.reverse()) await close();
  };
  try {
    const { relay, capture } = await openRelay(config, log);
    tracingRelay(relay.host, relay.port);
    opened.push(() => capture?.close());
    const shared = await openShared(config, log, now, options);
    opened.push(() => shared?.state.link.close());
    const health = new ServiceHealth();
    shared?.state.link.onHealth((up) => health.store(up));
    shared?.state.link.start();
    const metrics = await openMetrics(config);
    const outboxStore = await openOutbox(config, log, shared?.state, metrics);
    opened.push(() => outboxStore.close());
    const bounces = await openBounces(config.bounces, outboxStore, paths, metrics ?? NO_METRICS, log);
    opened.push(() => bounces.close());
    const calls = new Calls(log.child({ component: 'rpc' }));
    const actors = startActors(config, log, options, { relay, composer, paths, bounces, health, calls, metrics: metrics ?? NO_METRICS, outboxStore, shared: shared?.state, hasher: shared?.hasher ?? new CodeHasher(config.otp.secret), now });
    opened.push(() => actors.stop());
    await firstDials(actors.supervisor, relay, log);
    const { server, listener } = await serveGrpc(config, log, access, actors, { calls, metrics, health, sharedCaps: shared?.state.caps, bounces });
    opened.push(() => listener.destroy());
    const side = await openSidePorts(config, metrics, actors.inspection, log);
    // One line that says which optional parts are on, and where.
    log.info('listening', {
      host: config.host,
      port: listener.port,
      workers: config.pool.workers,
      relay: capture === undefined ? `${relay.host}:${relay.port}` : `capture (${capture.dir})`,
      tls: config.smtp.session.tls,
      ...access.describe(),
      dkim: dkimKey === undefined ? 'off' : `${dkimKey.selector}._domainkey.${dkimKey.domain}`,
      outbox: config.outbox.store === 'sqlite' ? `sqlite ${config.outbox.path}` : 'redis',
      redis: config.redis === undefined ? 'off' : config.redis.sentinels !== undefined ? 'sentinel' : 'on',
      metrics: side.metricsPort ?? 'off',
      inspector: side.inspectPort ?? (config.inspect?.statelyUrl !== undefined ? 'stately' : 'off'),
      tracing: tracingOn() ? `on, OTLP ${env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf'}` : 'off',
      bounces: config.bounces.domain === undefined ? 'off' : `${config.bounces.domain}${bounces.listenerPort !== undefined ? `, listener on ${config.bounces.listener?.host ?? ''}:${bounces.listenerPort}` : ', no listener'}`,
    });
    let stopping: Promise<void> | undefined;
    const shutdown = (): Promise<void> => {
      stopping ??= drainAndClose(config, log, { health, listener, server, calls, actors, side, unwind });
      return stopping;
    };
    return {
      config,
      port: listener.port,
      supervisor: actors.supervisor,
      otp: actors.otp,
      capture,
      health,
      metricsPort: side.metricsPort,
      inspectPort: side.inspectPort,
      bouncePort: bounces.listenerPort,
      redis: shared?.state.link,
      log,
      failed: actors.failed,
      shutdown,
      reload: () => reload(config, access, signer, log),
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}

/** The relay to send through: the configured one, or the embedded capture server. */
async function openRelay(config: Config, log: Logger): Promise<{ relay: { host: string; port: number }; capture: CaptureServer | undefined }> {
  if (config.smtp.relay !== undefined) return { relay: config.smtp.relay, capture: undefined };
  const capture = await startCaptureServer(config.mail.captureDir, config.mail.limits.maxMessageBytes, log.child({ component: 'capture' }));
  log.warn(`EMAIL_HOST is not set: NO MAIL LEAVES THIS MACHINE. Every message is captured as an .eml file in ${capture.dir}`, { captureDir: capture.dir });
  return { relay: { host: '127.0.0.1', port: capture.port }, capture };
}

/** With REDIS_URL, codes, idempotency keys (and, with OUTBOX_STORE=redis, the outbox) are shared by replicas; loaded only then. */
async function openShared(config: Config, log: Logger, now: () => number, options: BootOptions): Promise<{ state: SharedState; hasher: CodeHasher } | undefined> {
  if (config.redis === undefined) return undefined;
  const hasher = new CodeHasher(config.otp.secret);
  const { openSharedState } = await import('./redis/shared-state.js');
  const state = openSharedState(config.redis, {
    log,
    idempotencyWindowMs: config.intake.idempotencyWindowMs,
    idempotencyLimits: { maxBytes: config.intake.idempotencyMaxBytes, maxBytesPerCaller: config.intake.idempotencyMaxBytesPerCaller },
    otp: config.otp,
    hasher,
    clock: options.clock ?? now,
  });
  return { state, hasher };
}

/** The durable outbox: SQLite at OUTBOX_PATH (a store that cannot be opened stops boot, exit 2), or Redis. */
async function openOutbox(config: Config, log: Logger, shared: SharedState | undefined, metrics: PrometheusMetrics | undefined): Promise<OutboxStore> {
  const onCommit = metrics?.outboxCommitted;
  const onLost = metrics?.outboxLost;
  const { outbox } = config;
  if (outbox.store === 'redis') {
    if (shared === undefined) throw new MailroomError('ECONFIG', 'invalid configuration:\n  OUTBOX_STORE=redis: needs REDIS_URL');
    return shared.outbox({ ...outbox, ...(onLost !== undefined ? { onLost } : {}) });
  }
  const { openSqliteOutbox } = await import('./outbox/open-sqlite.js');
  return openSqliteOutbox({ path: outbox.path, settings: outbox, acceptDamaged: outbox.acceptDamaged, log: log.child({ component: 'outbox' }), ...(onCommit !== undefined ? { onCommit } : {}) });
}

async function openMetrics(config: Config): Promise<PrometheusMetrics | undefined> {
  if (config.metrics === undefined) return undefined;
  const { PrometheusMetrics } = await import('./metrics/metrics.js');
  return new PrometheusMetrics();
}

interface Actors {
  readonly supervisor: SupervisorActor;
  readonly otp: OtpActor;
  readonly mailer: Mailer;
  readonly outbox: Outbox;
  readonly hasher: CodeHasher;
  readonly budget: MemoryBudget;
  readonly inspection: InspectionBus | undefined;
  readonly failed: Promise<Error>;
  /** stops both at once (boot failed) */
  stop(): void;
  /** stops taking work, drains, and resolves when both have stopped */
  drain(timeoutMs: number): Promise<void>;
}

/** The supervisor and the OTP actor, with what they need; inspected when configured; a root that fails answers every call INTERNAL. */
function startActors(
  config: Config,
  log: Logger,
  options: BootOptions,
  parts: {
    relay: { host: string; port: number };
    composer: Composer;
    paths: ReturnPaths;
    bounces: Bounces;
    health: ServiceHealth;
    calls: Calls;
    metrics: ServiceMetrics & Partial<Pick<PrometheusMetrics, 'watch'>>;
    outboxStore: OutboxStore;
    shared: SharedState | undefined;
    hasher: CodeHasher;
    now: () => number;
  },
): Actors {
  const { composer, paths, bounces, health, calls, metrics, outboxStore, shared, hasher, now } = parts;
  let failedWith!: (err: Error) => void;
  const failed = new Promise<Error>((resolve) => {
    failedWith = resolve;
  });
  // Without an error subscriber xstate rethrows and the process dies; with
  // one that only logs, callers would wait for answers that never come.
  const onRootFailure = (name: string) => (err: unknown) => {
    const error = err instanceof Error ? err : new Error(String(err));
    log.error(`${name} actor failed: answering every call INTERNAL`, { reason: error.message, stack: error.stack });
    health.stop();
    calls.refuse(new MailroomError('EINTERNAL', `${name} failed`, { cause: error }));
    failedWith(error);
  };
  // Inspection is attached here, to both root actors (their children inherit
  // it), or not at all: with INSPECT_PORT and INSPECT unset it costs nothing.
  const inspection = config.inspect === undefined ? undefined : new InspectionBus(config.inspect.buffer, { showAddresses: config.inspect.showAddresses });
  const inspect = inspection === undefined ? {} : { inspect: inspection.inspect };
  if (inspection !== undefined) inspection.onBroken = (err) => log.error('inspection failed and is off; the actors go on', { reason: err.message, stack: err.stack });

  const jobs$ = new Subject<MailJob>();
  const supervisor = createActor(options.machines?.supervisor ?? supervisorMachine, {
    id: 'supervisor',
    ...inspect,
    input: {
      jobs$,
      outbox: { store: outboxStore, settings: config.outbox, simulator: bounces.simulator },
      log: log.child({ component: 'smtp' }),
      now,
      options: {
        ...config.pool,
        // QUIT after the drain is a courtesy: it must not stretch the shutdown
        // by a whole command timeout (30 s by default) past its deadline.
        closeTimeoutMs: Math.min(config.smtp.session.commandTimeoutMs, 2000),
        connection: { ...config.smtp.connection, session: withTlsContext({ ...config.smtp.session, ...parts.relay }) },
      },
    },
  });
  const pool = poolView(supervisor);
  supervisor.subscribe({
    error: (err) => {
      onRootFailure('supervisor')(err);
      pool.forceClose();
    },
  });
  supervisor.on('pool.health', (e) => health.relay(e.up));
  supervisor.on('outbox.health', (e) => {
    health.outbox(e.up);
    metrics.outboxStore(e.up);
  });
  supervisor.on('conn.lost', () => metrics.reconnect());
  supervisor.on('outbox.attempted', ({ job, error }) => metrics.outboxAttempt(job, error));
  supervisor.start();

  const budget = new MemoryBudget(config.intake.maxBytes, config.intake.maxBytesPerCaller);
  const idempotency = shared?.idempotency ?? new IdempotencyCache(config.intake.idempotencyWindowMs, config.intake.idempotencyMaxBytes, options.clock, config.intake.idempotencyMaxBytesPerCaller);
  const mailer = new Mailer(jobs$, composer, budget, idempotency, metrics, bounces.syncMail);
  const outbox = new Outbox(outboxStore, config.outbox, composer, now, paths, (id) => bounces.syncMail.written(id));
  if (inspection !== undefined) outboxStore.onEvents((events) => inspection.messages(events));
  const otpStore = options.otpStore ?? shared?.otpStore ?? new InMemoryOtpStore(config.otp);
  metrics.watch?.({ connectionStates: () => pool.connectionStates(), queueDepth: () => pool.queueDepth(), relayPace: () => pool.relayPace(), liveCodes: () => otpStore.size, outbox: () => outboxStore.counts() });
  const otp = createActor(options.machines?.otp ?? otpMachine, {
    id: 'otp',
    ...inspect,
    input: { options: config.otp, store: otpStore, hasher, mailer, log: log.child({ component: 'otp' }), ...(options.clock !== undefined ? { now: options.clock } : {}) },
  });
  otp.subscribe({ error: onRootFailure('otp') });
  otp.start();

  return {
    supervisor,
    otp,
    mailer,
    outbox,
    hasher,
    budget,
    inspection,
    failed,
    stop: () => {
      supervisor.stop();
      otp.stop();
    },
    drain: async (timeoutMs) => {
      // The OTP actor refuses new code sends and waits for its code mails,
      // which the supervisor drains with every other job.
      otp.send({ type: 'shutdown' });
      supervisor.send({ type: 'shutdown', timeoutMs });
      const done = await waitFor(supervisor, (s) => s.status !== 'active', { timeout: Infinity });
      // A failed supervisor settles no job: the code mails would never come back.
      if (done.status === 'error') otp.stop();
      else await waitFor(otp, (s) => s.status !== 'active', { timeout: Infinity });
      jobs$.complete();
    },
  };
}

/**
 * Takes traffic once every connection's first dial has ended, well or not:
 * a relay that is down at boot does not keep the port closed (health says
 * NOT_SERVING, and calls fail at once with the relay's error).
 */
async function firstDials(supervisor: SupervisorActor, relay: { host: string; port: number }, log: Logger): Promise<void> {
  const first = await waitFor(supervisor, (s) => s.status !== 'active' || !s.matches({ running: { delivery: 'starting' } }), { timeout: Infinity });
  if (first.matches({ running: { delivery: { serving: { pool: 'never' } } } })) log.error('no SMTP connection came up; serving anyway: calls fail at once while the relay cannot be reached', { relay: `${relay.host}:${relay.port}` });
}

/** SIGTERM: refuse new calls, drain within the deadline, close every part. */
async function drainAndClose(
  config: Config,
  log: Logger,
  parts: { health: ServiceHealth; listener: GrpcListener; server: grpc.Server; calls: Calls; actors: Actors; side: SidePorts; unwind: () => Promise<void> },
): Promise<void> {
  const { health, listener, server, calls, actors, side } = parts;
  // Watch streams hear it before the drain begins: an orchestrator stops sending traffic here.
  health.stop();
  log.info('shutting down', { timeoutMs: config.shutdownTimeoutMs });
  // New calls are refused from here on; calls in flight keep their replies coming.
  void listener.close();
  const serverDrained = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  await actors.drain(config.shutdownTimeoutMs);
  // Every job is settled by now; give their replies a moment to flush.
  await Promise.race([serverDrained, new Promise((r) => setTimeout(r, 1000).unref())]);
  calls.refuse(new MailroomError('ESHUTDOWN', 'the service stopped'));
  server.forceShutdown();
  await side.close();
  // The listener, the outbox (its last outcomes written first), Redis, the capture relay.
  await parts.unwind();
  log.info('stopped');
}

function reload(config: Config, access: CallerAccess, signer: DkimSigner | undefined, log: Logger): void {
  const { reread, kept } = access.reload();
  if (signer !== undefined && config.mail.dkim !== undefined) {
    try {
      signer.rekey(loadDkimKey(config.mail.dkim, config.mail.from.address));
      reread.push('the DKIM key');
    } catch (err) {
      log.error('SIGHUP: the DKIM key did not load', { reason: (err as Error).message });
      kept.push('the DKIM key');
    }
  }
  if (reread.length === 0 && kept.length === 0) {
    log.info('SIGHUP: nothing to re-read (no AUTH_TOKENS_FILE, no gRPC TLS, no DKIM key)');
    return;
  }
  const done = reread.length > 0 ? `re-read ${reread.join(' and ')}` : 're-read nothing';
  const why = kept.length > 0 ? `; kept ${kept.join(' and ')} as loaded before (it did not load: see the error above)` : '';
  if (kept.length > 0) log.warn(`SIGHUP: ${done}${why}`);
  else log.info(`SIGHUP: ${done}`);
}
