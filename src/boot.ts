// The composition root: configuration, logger, actors, servers. Nothing else
// wires real implementations together; tests call boot() with their own env
// (and, through `machines`, their own machine implementations).
import { Subject } from 'rxjs';
import { createActor, waitFor } from 'xstate';
import { loadConfig, type Config } from './config.js';
import { createLogger, type Logger } from './log.js';
import { startCaptureServer, type CaptureServer } from './capture/server.js';
import { supervisorMachine, type SupervisorActor } from './actors/supervisor.js';
import { otpMachine, type OtpActor } from './actors/otp.js';
import { CodeHasher } from './otp/code.js';
import { InMemoryOtpStore } from './otp/memory-store.js';
import type { OtpStore } from './otp/store.js';
import type { MailJob } from './mail/job.js';
import { Mailer } from './mail/mailer.js';
import { MemoryBudget } from './mail/memory-budget.js';
import { IdempotencyCache } from './mail/idempotency.js';
import type { RedisLink } from './redis/client.js';
import { MailroomError } from './errors.js';
import { missingV8Flags } from './runtime-flags.js';
import { Calls } from './rpc/calls.js';
import * as grpc from '@grpc/grpc-js';
import { createGrpcServer, receiveLimit } from './rpc/server.js';
import { CallerAccess } from './rpc/access.js';
import { withTlsContext } from './smtp/tls.js';
import { InspectionBus } from './inspect/bus.js';
import { openSidePorts, type SidePorts } from './side-ports.js';
import { ServiceHealth } from './rpc/health.js';
import { addReflection } from './rpc/reflection.js';
import { metricsInterceptor } from './rpc/metrics-interceptor.js';
import { NO_METRICS } from './metrics/service-metrics.js';
import { poolView, type PoolView } from './actors/pool-view.js';
import { ArrivalGate, type Admission } from './rpc/admission.js';
import { GrpcListener } from './rpc/listener.js';
import { mailServiceHandlers } from './rpc/mail-service.js';
import { otpServiceHandlers } from './rpc/otp-service.js';

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
  /** the clock of every expiry (OTP codes, idempotency windows), epoch ms; tests move it instead of sleeping */
  readonly clock?: () => number;
}

export async function boot(env: Readonly<Record<string, string | undefined>>, options: BootOptions = {}): Promise<Service> {
  const config = loadConfig(env);
  const log = options.log ?? createLogger(config.log);
  const missing = missingV8Flags();
  if (missing.length > 0) log.warn(`started without ${missing.join(' ')}: expect 10-20% more CPU per mail (see src/runtime-flags.ts; npm start sets it)`);

  // Read before anything starts: certificates that do not load stop boot (exit 2).
  const access = new CallerAccess(config.auth, config, log);

  let capture: CaptureServer | undefined;
  let relay = config.smtp.relay;
  if (relay === undefined) {
    capture = await startCaptureServer(config.mail.captureDir, config.mail.limits.maxBodyBytes, log.child({ component: 'capture' }));
    relay = { host: '127.0.0.1', port: capture.port };
    log.warn(`EMAIL_HOST is not set: NO MAIL LEAVES THIS MACHINE. Every message is captured as an .eml file in ${capture.dir}`, {
      captureDir: capture.dir,
    });
  }
  if (config.otp.returnCode) log.warn('OTP_RETURN_CODE=true: codes are returned to callers. This is for tests only, never production.');

  const rpcLog = log.child({ component: 'rpc' });
  const calls = new Calls(rpcLog);
  const health = new ServiceHealth();
  let pool: PoolView | undefined;
  let storeRef: OtpStore | undefined;
  const prometheus =
    config.metrics === undefined
      ? undefined
      : new (await import('./metrics/metrics.js')).PrometheusMetrics({
          connectionStates: () => pool?.connectionStates() ?? new Map(),
          queueDepth: () => pool?.queueDepth() ?? 0,
          liveCodes: () => storeRef?.size ?? 0,
        });
  const metrics = prometheus ?? NO_METRICS;
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
      log: log.child({ component: 'smtp' }),
      options: {
        ...config.pool,
        // QUIT after the drain is a courtesy: it must not stretch the shutdown
        // by a whole command timeout (30 s by default) past its deadline.
        closeTimeoutMs: Math.min(config.smtp.session.commandTimeoutMs, 2000),
        connection: { ...config.smtp.connection, session: withTlsContext({ ...config.smtp.session, ...relay }) },
      },
    },
  });
  supervisor.subscribe({
    error: (err) => {
      onRootFailure('supervisor')(err);
      pool?.forceClose();
    },
  });
  pool = poolView(supervisor);
  supervisor.on('pool.health', (e) => health.relay(e.up));
  supervisor.on('conn.lost', () => metrics.reconnect());
  supervisor.start();

  // Take traffic once every connection's first dial has ended, well or not:
  // a relay that is down at boot does not keep the port closed (health says
  // NOT_SERVING, and calls fail at once with the relay's error).
  const first = await waitFor(supervisor, (s) => s.status !== 'active' || !s.matches('starting'), { timeout: Infinity });
  if (first.matches({ serving: 'down' })) log.error('no SMTP connection came up; serving anyway: calls fail at once while the relay cannot be reached', { relay: `${relay.host}:${relay.port}` });

  // With REDIS_URL, codes and idempotency keys are shared by replicas; the
  // service starts whether Redis answers yet or not (health says when).
  const otpConfig = config.otp;
  const hasher = new CodeHasher(otpConfig.secret);
  const shared =
    config.redis === undefined
      ? undefined
      : (await import('./redis/shared-state.js')).openSharedState(config.redis, {
          log,
          idempotencyWindowMs: config.intake.idempotencyWindowMs,
          otp: otpConfig,
          hasher,
          clock: options.clock,
        });
  const redis = shared?.link;
  redis?.onHealth((up) => health.store(up));
  redis?.start();
  const budget = new MemoryBudget(config.intake.maxBytes);
  const idempotency = shared?.idempotency ?? new IdempotencyCache(config.intake.idempotencyWindowMs, config.intake.idempotencyMaxBytes, options.clock);
  const mailer = new Mailer(jobs$, config.mail.from, budget, idempotency, metrics);
  const otp = createActor(options.machines?.otp ?? otpMachine, {
    id: 'otp',
    ...inspect,
    input: {
      options: otpConfig,
      store: (storeRef = options.otpStore ?? shared?.otpStore ?? new InMemoryOtpStore(otpConfig)),
      hasher,
      mailer,
      log: log.child({ component: 'otp' }),
      ...(options.clock !== undefined ? { now: options.clock } : {}),
    },
  });
  otp.subscribe({ error: onRootFailure('otp') });
  otp.start();

  let listener: GrpcListener | undefined;
  const sendMailAdmission: Admission = {
    early: () => budget.early(),
    // A decoded request's strings never take more than its encoded bytes did
    // (V8 keeps Latin-1 at a byte a character, the rest at two a UTF-16
    // unit; UTF-8 spends at least as much on each): the bytes stand for both.
    admit: (bytes) => budget.admit(bytes, bytes),
    // As many requests arriving at once as the budget could hold at their largest (the request, and a message as large).
    gate: new ArrivalGate(Math.max(1, Math.floor(config.intake.maxBytes / (2 * receiveLimit(config.mail.limits))))),
  };
  const server = createGrpcServer(
    {
      mail: mailServiceHandlers({ mailer, calls, limits: config.mail.limits, log: rpcLog }),
      otp: otpServiceHandlers({
        mailbox: otp,
        calls,
        hasher,
        codeLength: otpConfig.length,
        limits: otpConfig,
        metrics,
        log: rpcLog,
      }),
    },
    config.grpc,
    config.mail.limits,
    {
      sendMailAdmission,
      // Metrics innermost: every status passes it, the refusals of the others included.
      interceptors: [
        ...(prometheus === undefined ? [] : [metricsInterceptor(prometheus)]),
        access.interceptor({ authenticated: (peer) => listener?.authenticated(peer), refused: (peer) => listener?.refused(peer) }),
      ],
    },
    rpcLog,
  );
  health.addToServer(server);
  addReflection(server);
  let side: SidePorts | undefined;
  try {
    listener = await GrpcListener.listen(server, access.credentials(), config.host, config.port, config.grpc, rpcLog);
    side = await openSidePorts(config, prometheus, inspection, log);
  } catch (err) {
    supervisor.stop();
    otp.stop();
    listener?.destroy();
    await redis?.close();
    await capture?.close();
    if (listener !== undefined) throw err; // a side port: openSidePorts said which
    // Most often another instance holds the port: say so in the words of the
    // configuration (exit 2 from main) instead of grpc-js's stack trace.
    throw new MailroomError('ECONFIG', `invalid configuration:\n  PORT=${config.port} on HOST=${config.host}: cannot listen (${(err as Error).message})`, { cause: err });
  }
  const sidePorts = side;
  const { port } = listener;
  const accepting = listener;
  log.info('listening', {
    host: config.host,
    port,
    workers: config.pool.workers,
    relay: `${relay.host}:${relay.port}`,
    tls: config.smtp.session.tls,
    ...access.describe(),
    metricsPort: sidePorts.metricsPort,
    inspectPort: sidePorts.inspectPort,
  });

  let stopping: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    stopping ??= (async () => {
      // Watch streams hear it before the drain begins: an orchestrator stops sending traffic here.
      health.stop();
      log.info('shutting down', { timeoutMs: config.shutdownTimeoutMs });
      // New calls are refused from here on; calls in flight keep their replies coming.
      void accepting.close();
      const serverDrained = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      // The OTP actor refuses new code sends and waits for its code mails,
      // which the supervisor drains with every other job.
      otp.send({ type: 'shutdown' });
      supervisor.send({ type: 'shutdown', timeoutMs: config.shutdownTimeoutMs });
      const pool = await waitFor(supervisor, (s) => s.status !== 'active', { timeout: Infinity });
      // A failed supervisor settles no job: the code mails would never come back.
      if (pool.status === 'error') otp.stop();
      else await waitFor(otp, (s) => s.status !== 'active', { timeout: Infinity });
      jobs$.complete();
      // Every job is settled by now; give their replies a moment to flush.
      await Promise.race([serverDrained, new Promise((r) => setTimeout(r, 1000).unref())]);
      calls.refuse(new MailroomError('ESHUTDOWN', 'the service stopped'));
      server.forceShutdown();
      accepting.destroy();
      await sidePorts.close();
      await redis?.close();
      await capture?.close();
      log.info('stopped');
    })();
    return stopping;
  };

  const reload = (): void => {
    const { reread, kept } = access.reload();
    if (reread.length === 0 && kept.length === 0) {
      log.info('SIGHUP: nothing to re-read (no AUTH_TOKENS_FILE, no gRPC TLS)');
      return;
    }
    const done = reread.length > 0 ? `re-read ${reread.join(' and ')}` : 're-read nothing';
    const why = kept.length > 0 ? `; kept ${kept.join(' and ')} as loaded before (it did not load: see the error above)` : '';
    if (kept.length > 0) log.warn(`SIGHUP: ${done}${why}`);
    else log.info(`SIGHUP: ${done}`);
  };

  return { config, port, supervisor, otp, capture, health, metricsPort: sidePorts.metricsPort, inspectPort: sidePorts.inspectPort, redis, log, failed, shutdown, reload };
}
