// The composition root: configuration, logger, actors, servers. Nothing else
// wires real implementations together; tests call boot() with their own env.
import { Subject } from 'rxjs';
import { createActor, waitFor } from 'xstate';
import { loadConfig, type Config } from './config.js';
import { createLogger, type Logger } from './log.js';
import { startCaptureServer, type CaptureServer } from './capture/server.js';
import { supervisorMachine, type SupervisorActor } from './actors/supervisor.js';
import { withTlsContext } from './smtp/session.js';
import { otpMachine, type OtpActor } from './actors/otp.js';
import { CodeHasher } from './otp/code.js';
import { InMemoryOtpStore } from './otp/memory-store.js';
import type { MailJob } from './mail/job.js';
import { Mailer } from './mail/mailer.js';
import { IdempotencyCache } from './mail/idempotency.js';
import { parseAddressList } from './mail/address.js';
import { MailroomError } from './errors.js';
import { createGrpcServer, bindServer } from './rpc/server.js';
import { mailServiceHandlers } from './rpc/mail-service.js';
import { otpServiceHandlers } from './rpc/otp-service.js';

export interface Service {
  readonly config: Config;
  readonly port: number;
  readonly supervisor: SupervisorActor;
  /** its snapshot's context.store is what tests inspect */
  readonly otp: OtpActor;
  readonly capture: CaptureServer | undefined;
  readonly log: Logger;
  /** Stop taking calls, drain within SHUTDOWN_TIMEOUT_SECONDS, close everything. */
  shutdown(): Promise<void>;
}

export interface BootOptions {
  /** replaces the logger built from LOG_LEVEL/LOG_FORMAT (tests silence it) */
  readonly log?: Logger;
}

export async function boot(env: Readonly<Record<string, string | undefined>>, options: BootOptions = {}): Promise<Service> {
  const config = loadConfig(env);
  const log = options.log ?? createLogger(config.log);
  const from = parseAddressList(config.mail.from);
  if (!from.ok || from.value.length !== 1) {
    throw new MailroomError('ECONFIG', `invalid configuration:\n  EMAIL_FROM=${JSON.stringify(config.mail.from)}: expected one address`);
  }

  let capture: CaptureServer | undefined;
  let smtpHost = config.smtp.host;
  let smtpPort = config.smtp.port;
  if (smtpHost === undefined) {
    capture = await startCaptureServer(config.mail.captureDir, config.mail.maxBodyBytes, log.child({ component: 'capture' }));
    smtpHost = '127.0.0.1';
    smtpPort = capture.port;
    log.warn(`EMAIL_HOST is not set: NO MAIL LEAVES THIS MACHINE. Every message is captured as an .eml file in ${capture.dir}`, {
      captureDir: capture.dir,
    });
  }
  if (config.otp.returnCode) log.warn('OTP_RETURN_CODE=true: codes are returned to callers. This is for tests only, never production.');

  const jobs$ = new Subject<MailJob>();
  const { smtp } = config;
  const supervisor = createActor(supervisorMachine, {
    input: {
      jobs$,
      log: log.child({ component: 'smtp' }),
      options: {
        workers: config.workers,
        queueLimit: config.queue.limit,
        maxAttempts: config.queue.maxAttempts,
        rateLimitPerSecond: config.queue.rateLimitPerSecond,
        queueTimeoutMs: config.queue.queueTimeoutMs,
        retryBaseMs: smtp.backoffBaseMs,
        retryMaxMs: smtp.backoffMaxMs,
        // QUIT after the drain is a courtesy: it must not stretch the shutdown
        // by a whole command timeout (30 s by default) past its deadline.
        closeTimeoutMs: Math.min(smtp.commandTimeoutMs, 2000),
        connection: {
          keepaliveMs: smtp.keepaliveMs,
          maxMessagesPerConnection: smtp.maxMessagesPerConnection,
          backoffBaseMs: smtp.backoffBaseMs,
          backoffMaxMs: smtp.backoffMaxMs,
          session: withTlsContext({ ...smtp, host: smtpHost, port: smtpPort }),
        },
      },
    },
  });
  // Without an error subscriber xstate rethrows and the process dies.
  supervisor.subscribe({ error: (err) => log.error('supervisor failed', { reason: (err as Error).message }) });
  const poolUp = new Promise<void>((resolve) => {
    const sub = supervisor.on('pool.health', (e) => {
      if (e.up > 0) {
        sub.unsubscribe();
        resolve();
      }
    });
  });
  supervisor.start();

  // Take traffic once the pool can serve it; a relay that is down at boot
  // does not keep the service from starting (queued calls then wait or fail).
  const readyWithin = smtp.connectTimeoutMs + smtp.greetingTimeoutMs;
  const ready = await Promise.race([poolUp.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), readyWithin).unref())]);
  if (!ready) log.error(`no SMTP connection came up within ${readyWithin} ms; serving anyway, calls will wait for the relay`);

  const mailer = new Mailer(jobs$, from.value[0] as NonNullable<(typeof from.value)[0]>, new IdempotencyCache(config.queue.idempotencyWindowMs));
  const otpConfig = config.otp;
  const hasher = new CodeHasher(otpConfig.secret);
  const otp = createActor(otpMachine, {
    input: {
      options: {
        length: otpConfig.length,
        lifespanMs: otpConfig.lifespanMs,
        resendCooldownMs: otpConfig.resendCooldownMs,
        cleanupMs: otpConfig.cleanupMs,
        returnCode: otpConfig.returnCode,
        templates: { subject: otpConfig.subjectTemplate, text: otpConfig.textTemplate, html: otpConfig.htmlTemplate },
      },
      store: new InMemoryOtpStore(otpConfig),
      hasher,
      mailer,
      log: log.child({ component: 'otp' }),
    },
  });
  otp.subscribe({ error: (err) => log.error('otp actor failed', { reason: (err as Error).message }) });
  otp.start();

  const rpcLog = log.child({ component: 'rpc' });
  const server = createGrpcServer(
    {
      mail: mailServiceHandlers({ mailer, limits: config.mail, log: rpcLog }),
      otp: otpServiceHandlers({ otp, hasher, codeLength: otpConfig.length, maxAttempts: otpConfig.maxAttempts, log: rpcLog }),
    },
    rpcLog,
  );
  let port: number;
  try {
    port = await bindServer(server, config.host, config.port);
  } catch (err) {
    // Most often another instance holds the port: say so in the words of the
    // configuration (exit 2 from main) instead of grpc-js's stack trace.
    supervisor.stop();
    otp.stop();
    await capture?.close();
    const reason = /errors: \[(.*)\]$/.exec((err as Error).message)?.[1] ?? (err as Error).message;
    throw new MailroomError('ECONFIG', `invalid configuration:\n  PORT=${config.port} on HOST=${config.host}: cannot listen (${reason})`, { cause: err });
  }
  log.info('listening', { host: config.host, port, workers: config.workers, relay: `${smtpHost}:${smtpPort}`, tls: smtp.tls });

  let stopping: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    stopping ??= (async () => {
      log.info('shutting down', { timeoutMs: config.shutdownTimeoutMs });
      // New calls are refused from here on; calls in flight keep their replies coming.
      const serverDrained = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      supervisor.send({ type: 'shutdown', timeoutMs: config.shutdownTimeoutMs });
      await waitFor(supervisor, (s) => s.status === 'done', { timeout: Infinity });
      // Every code mail is settled by now; the actor answers any straggler with ESHUTDOWN.
      otp.send({ type: 'shutdown' });
      jobs$.complete();
      // Every job is settled by now; give their replies a moment to flush.
      await Promise.race([serverDrained, new Promise((r) => setTimeout(r, 1000).unref())]);
      server.forceShutdown();
      await capture?.close();
      log.info('stopped');
    })();
    return stopping;
  };

  return { config, port, supervisor, otp, capture, log, shutdown };
}
