// The one place that reads configuration. Every variable is declared once in
// SCHEMA with its parser and default; loadConfig checks them all and reports
// every bad one together, so a broken deployment is fixed in one round.
import { hostname } from 'node:os';
import { MailroomError } from './errors.js';
import { Reader, type Env } from './config-reader.js';
import type { SessionSettings, TlsMode } from './smtp/options.js';
import type { ConnectionSettings } from './actors/smtp-connection.js';
import type { PoolSettings } from './actors/supervisor.js';
import type { OtpOptions } from './actors/otp.js';
import type { OtpLimits } from './otp/store.js';
import type { OtpRateLimits } from './rpc/otp-caps.js';
import type { BounceSettings } from './bounce/settings.js';
import type { OutboxSettings } from './outbox/settings.js';
import type { MailLimits } from './rpc/validate.js';
import type { ServerLimits } from './rpc/server.js';
import type { ListenerLimits } from './rpc/listener.js';
import type { Address } from './mail/address.js';
import type { DkimSettings } from './mail/dkim-key.js';
import { hasCodePlaceholder } from './otp/template.js';
import { isLoopback } from './rpc/peer.js';
import type { AuthSettings } from './rpc/access.js';
import type { RedisSettings } from './redis/client.js';
import { LOG_LEVELS, type LogFormat, type LogLevel } from './log.js';

export type { TlsMode } from './smtp/options.js';

export interface Config {
  readonly port: number;
  readonly host: string;
  /** who may call (see src/rpc/access.ts) */
  readonly auth: AuthSettings;
  /** undefined: no metrics endpoint */
  readonly metrics: { readonly host: string; readonly port: number } | undefined;
  /** undefined: no inspection at all (it costs nothing then) */
  readonly inspect:
    | {
        /** the built-in page on 127.0.0.1; undefined: none */
        readonly port: number | undefined;
        readonly buffer: number;
        readonly showAddresses: boolean;
        /** pages streaming at once */
        readonly maxClients: number;
        /** INSPECT=stately: where the Stately bridge sends; undefined: no bridge */
        readonly statelyUrl: string | undefined;
      }
    | undefined;
  /** undefined: OTP codes and idempotency keys stay in this process's memory */
  readonly redis: RedisSettings | undefined;
  readonly smtp: {
    /** where the relay is; undefined: run the embedded capture server */
    readonly relay: { readonly host: string; readonly port: number } | undefined;
    /** every session's options but where the relay is */
    readonly session: SessionSettings;
    /** each connection's keepalive, recycling, pipelining and backoff */
    readonly connection: ConnectionSettings;
  };
  /** the pool of connections and its queue */
  readonly pool: PoolSettings;
  /** what SendMail holds while it works, and how long it remembers idempotency keys */
  readonly intake: {
    /** bytes of all queued and in-flight messages together (their requests included) */
    readonly maxBytes: number;
    readonly idempotencyWindowMs: number;
    /** and what one caller's may take of it */
    readonly maxBytesPerCaller: number;
    /** bytes the idempotency keys and their results may take */
    readonly idempotencyMaxBytes: number;
    /** and one caller's keys */
    readonly idempotencyMaxBytesPerCaller: number;
  };
  readonly mail: {
    /** From header and envelope sender */
    readonly from: Address;
    readonly captureDir: string;
    readonly limits: MailLimits;
    /** undefined: messages go out unsigned */
    readonly dkim: DkimSettings | undefined;
  };
  /** the gRPC port's limits */
  readonly grpc: ListenerLimits & ServerLimits;
  /** the durable outbox (DELIVERY_QUEUED) */
  readonly outbox: OutboxSettings & {
    /** sqlite: OUTBOX_PATH on this machine; redis: shared by replicas (REDIS_URL) */
    readonly store: 'sqlite' | 'redis';
    readonly path: string;
    /** redis: how long a replica's claim on a message holds before another may take it over */
    readonly leaseMs: number;
    /** OUTBOX_ACCEPT_DAMAGED: start on a damaged WAL, logging what is dropped */
    readonly acceptDamaged: boolean;
  };
  readonly otp: OtpOptions &
    OtpLimits &
    OtpRateLimits & {
      /** undefined: a random key per process */
      readonly secret: string | undefined;
    };
  /** delivery reports and the suppression list (docs/bounces.md) */
  readonly bounces: BounceSettings;
  readonly log: { readonly level: LogLevel; readonly format: LogFormat };
  readonly shutdownTimeoutMs: number;
}


const DAY_SECONDS = 86_400;
const MIB = 1_048_576;
const DEFAULT_OTP_TEXT = 'Your code is {{code}}. It expires in {{minutes}} minutes.\r\nIf you did not ask for it, ignore this mail.';

export function loadConfig(env: Env): Config {
  const r = new Reader(env);
  const smtpHost = r.raw('EMAIL_HOST');
  // Port and TLS mode default from each other: 465 is implicit TLS, 587
  // submission with STARTTLS, 25 plain; whichever is given decides the other.
  const explicitTls = r.raw('EMAIL_TLS')?.toLowerCase();
  const portForTls = explicitTls === 'starttls' ? 587 : explicitTls === 'none' ? 25 : 465;
  const smtpPort = r.int('EMAIL_PORT', portForTls, 1, 65_535);
  const user = r.raw('EMAIL');
  const password = r.raw('APP_PASSWORD');
  if ((user === undefined) !== (password === undefined)) {
    r.problems.push('EMAIL and APP_PASSWORD: set both for AUTH, or neither');
  }
  const from = r.sender(user);
  const tls = r.oneOf<TlsMode>('EMAIL_TLS', ['implicit', 'starttls', 'none'], smtpPort === 465 ? 'implicit' : 'starttls');
  const pipelineDepth = r.int('SMTP_PIPELINE_DEPTH', 4, 1, 64);

  const seconds = (name: string, fallback: number, min: number, max: number): number =>
    r.int(name, fallback, min, max) * 1000;
  // Every limit a caller can fill has a share a caller may take of it: half by default.
  const half = (n: number): number => Math.max(1, Math.floor(n / 2));
  const queueLimit = r.int('QUEUE_LIMIT', 1_000, 1, 1_000_000);
  const intakeBytes = r.int('QUEUE_MAX_BYTES', 128 * MIB, MIB, 64 * 1024 * MIB);
  const idempotencyBytes = r.int('IDEMPOTENCY_MAX_BYTES', 128 * MIB, 64 * 1024, 16 * 1024 * MIB);
  const outboxBytes = r.int('OUTBOX_MAX_BYTES', 1024 * MIB, MIB, 1024 * 1024 * MIB);
  const bulkShare = r.share('LANE_BULK_MIN_SHARE', 0.1, 0.9);

  const auth = authConfig(r);
  const metricsPort = r.raw('METRICS_PORT') === undefined ? undefined : r.int('METRICS_PORT', 0, 0, 65_535);
  const host = r.raw('HOST') ?? (auth.required ? '0.0.0.0' : '127.0.0.1');
  if (!auth.required && !auth.allowUnauthenticated && !isLoopback(host)) {
    r.problems.push(
      `HOST=${JSON.stringify(host)}: callers are not authenticated, so mailroom listens on loopback only. ` +
        'Add AUTH_TOKENS_FILE (lines of "name token"), or GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE and GRPC_TLS_CLIENT_CA_FILE for client certificates; ' +
        'or set ALLOW_UNAUTHENTICATED=true to serve whoever reaches HOST',
    );
  }

  const redis = redisConfig(r);

  const inspectPort = r.raw('INSPECT_PORT') === undefined ? undefined : r.int('INSPECT_PORT', 0, 0, 65_535);
  const stately = r.oneOf<'off' | 'stately'>('INSPECT', ['off', 'stately'], 'off') === 'stately';
  const inspect =
    inspectPort === undefined && !stately
      ? undefined
      : {
          port: inspectPort,
          buffer: r.int('INSPECT_BUFFER', 10_000, 100, 1_000_000),
          showAddresses: r.bool('INSPECT_SHOW_ADDRESSES', false),
          maxClients: r.int('INSPECT_MAX_CLIENTS', 8, 1, 1_000),
          statelyUrl: stately ? (r.raw('INSPECT_STATELY_URL') ?? 'ws://localhost:8080') : undefined,
        };

  const bounceDomain = r.raw('BOUNCE_DOMAIN')?.trim().toLowerCase();
  if (bounceDomain !== undefined && !/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/.test(bounceDomain)) r.problems.push(`BOUNCE_DOMAIN=${JSON.stringify(bounceDomain)}: not a domain name`);
  const bouncePort = r.raw('BOUNCE_PORT') === undefined ? undefined : r.int('BOUNCE_PORT', 0, 0, 65_535);
  if (bouncePort !== undefined && bounceDomain === undefined) r.problems.push('BOUNCE_PORT: set BOUNCE_DOMAIN too (the listener takes mail for that domain only)');

  const config: Config = {
    port: r.int('PORT', 40_700, 0, 65_535),
    host,
    auth,
    metrics: metricsPort === undefined ? undefined : { host: r.raw('METRICS_HOST') ?? '127.0.0.1', port: metricsPort },
    redis,
    inspect,
    smtp: {
      relay: smtpHost === undefined ? undefined : { host: smtpHost, port: smtpPort },
      session: {
        // The capture server speaks plain SMTP on loopback.
        tls: smtpHost === undefined ? 'none' : tls,
        ca: r.file('EMAIL_CA_FILE'),
        user,
        password,
        heloName: r.raw('EMAIL_HELO_NAME') ?? hostname(),
        connectTimeoutMs: r.int('SMTP_CONNECT_TIMEOUT_MS', 10_000, 1, 600_000),
        greetingTimeoutMs: r.int('SMTP_GREETING_TIMEOUT_MS', 30_000, 1, 600_000),
        commandTimeoutMs: r.int('SMTP_COMMAND_TIMEOUT_MS', 30_000, 1, 600_000),
        dataTimeoutMs: r.int('SMTP_DATA_TIMEOUT_MS', 120_000, 1, 600_000),
      },
      connection: {
        keepaliveMs: r.int('SMTP_KEEPALIVE_MS', 30_000, 10, 3_600_000),
        maxMessagesPerConnection: r.int('SMTP_MAX_MESSAGES_PER_CONNECTION', 100, 1, 1_000_000),
        pipelineDepth,
        // A depth set above the default bound raises the bound with it.
        pipelineDepthMax: r.int('SMTP_PIPELINE_DEPTH_MAX', Math.max(32, pipelineDepth), 1, 256),
        backoffBaseMs: r.int('SMTP_BACKOFF_BASE_MS', 500, 1, 600_000),
        backoffMaxMs: r.int('SMTP_BACKOFF_MAX_MS', 30_000, 1, 3_600_000),
      },
    },
    pool: {
      workers: r.int('WORKERS', 5, 1, 256),
      queueLimit,
      queueLimitPerCaller: r.int('QUEUE_LIMIT_PER_CALLER', half(queueLimit), 1, queueLimit),
      bulkShare,
      maxAttempts: r.int('SEND_MAX_ATTEMPTS', 3, 1, 20),
      rateLimitPerSecond: r.int('SEND_RATE_LIMIT_PER_SECOND', 0, 0, 1_000_000),
      paceRecoverMs: r.int('RELAY_PACE_RECOVER_MS', 1_000, 10, 600_000),
      queueTimeoutMs: r.int('QUEUE_TIMEOUT_MS', 60_000, 10, 3_600_000),
      unreachableAfterMs: r.int('SMTP_UNREACHABLE_AFTER_MS', 15_000, 0, 3_600_000),
    },
    intake: {
      maxBytes: intakeBytes,
      maxBytesPerCaller: r.int('QUEUE_MAX_BYTES_PER_CALLER', half(intakeBytes), 1, intakeBytes),
      idempotencyWindowMs: seconds('IDEMPOTENCY_WINDOW_SECONDS', 3_600, 1, 7 * DAY_SECONDS),
      idempotencyMaxBytes: idempotencyBytes,
      idempotencyMaxBytesPerCaller: r.int('IDEMPOTENCY_MAX_BYTES_PER_CALLER', half(idempotencyBytes), 1, idempotencyBytes),
    },
    mail: {
      from,
      captureDir: r.raw('MAIL_CAPTURE_DIR') ?? 'var/mail',
      limits: {
        maxSubjectChars: r.int('MAX_SUBJECT_CHARS', 998, 1, 10_000),
        maxBodyBytes: r.int('MAX_BODY_BYTES', 1_048_576, 1, 50 * 1_048_576),
        maxRecipients: r.int('MAX_RECIPIENTS', 50, 1, 1_000),
        maxDisplayNameChars: r.int('MAX_DISPLAY_NAME_CHARS', 256, 1, 900),
        maxMessageBytes: r.int('MAX_MESSAGE_BYTES', 10 * MIB, 64 * 1024, 100 * MIB),
        maxAttachments: r.int('MAX_ATTACHMENTS', 20, 0, 1_000),
        maxBatch: r.int('MAX_BATCH', 500, 1, 10_000),
      },
      dkim: dkimSettings(r),
    },
    grpc: {
      maxConnections: r.int('MAX_GRPC_CONNECTIONS', 1_000, 1, 100_000),
      maxConnectionsPerPeer: r.int('MAX_GRPC_CONNECTIONS_PER_PEER', 100, 1, 100_000),
      maxAuthFailures: r.int('GRPC_MAX_AUTH_FAILURES', 10, 1, 1_000_000),
      maxStreamsPerConnection: r.int('GRPC_MAX_STREAMS_PER_CONNECTION', 100, 1, 10_000),
      idleTimeoutMs: r.int('GRPC_IDLE_TIMEOUT_MS', 300_000, 1_000, 86_400_000),
      handshakeTimeoutMs: r.int('GRPC_HANDSHAKE_TIMEOUT_MS', 10_000, 100, 600_000),
      receiveTimeoutMs: r.int('GRPC_RECEIVE_TIMEOUT_MS', 30_000, 100, 600_000),
    },
    outbox: {
      store: r.oneOf<'sqlite' | 'redis'>('OUTBOX_STORE', ['sqlite', 'redis'], 'sqlite'),
      path: r.raw('OUTBOX_PATH') ?? 'var/outbox.db',
      retryBaseMs: seconds('OUTBOX_RETRY_BASE_SECONDS', 30, 1, DAY_SECONDS),
      retryMaxMs: seconds('OUTBOX_RETRY_MAX_SECONDS', 1_800, 1, DAY_SECONDS),
      maxAgeMs: seconds('OUTBOX_MAX_AGE_SECONDS', DAY_SECONDS, 1, 30 * DAY_SECONDS),
      retentionMs: seconds('OUTBOX_RETENTION_SECONDS', 7 * DAY_SECONDS, 1, 365 * DAY_SECONDS),
      maxDelayMs: seconds('OUTBOX_MAX_DELAY_SECONDS', 7 * DAY_SECONDS, 0, 365 * DAY_SECONDS),
      maxBytes: outboxBytes,
      maxBytesPerCaller: r.int('OUTBOX_MAX_BYTES_PER_CALLER', half(outboxBytes), 1, outboxBytes),
      bulkShare,
      leaseMs: seconds('OUTBOX_LEASE_SECONDS', 60, 1, DAY_SECONDS),
      storeBackoffMaxMs: r.int('OUTBOX_STORE_BACKOFF_MAX_MS', 5_000, 100, 600_000),
      acceptDamaged: r.bool('OUTBOX_ACCEPT_DAMAGED', false),
    },
    otp: {
      lifespanMs: seconds('OTP_LIFESPAN_SECONDS', 120, 1, DAY_SECONDS),
      cleanupMs: seconds('OTP_CLEANUP_SECONDS', 180, 1, DAY_SECONDS),
      length: r.int('OTP_LENGTH', 6, 4, 12),
      maxAttempts: r.int('OTP_MAX_ATTEMPTS', 5, 1, 100),
      resendCooldownMs: seconds('OTP_RESEND_COOLDOWN_SECONDS', 30, 0, DAY_SECONDS),
      maxSendsPerHour: r.int('OTP_MAX_SENDS_PER_HOUR', 10, 1, 10_000),
      maxSendsPerMinute: r.int('OTP_MAX_SENDS_PER_MINUTE', 300, 0, 10_000_000),
      maxChecksPerSecond: r.int('OTP_MAX_CHECKS_PER_SECOND', 2_000, 0, 10_000_000),
      maxSendsPerKeyPerHour: r.int('OTP_MAX_SENDS_PER_KEY_PER_HOUR', 0, 0, 10_000_000),
      maxChecksPerKeyPerMinute: r.int('OTP_MAX_CHECKS_PER_KEY_PER_MINUTE', 0, 0, 10_000_000),
      secret: r.secret('OTP_SECRET', 32),
      returnCode: r.bool('OTP_RETURN_CODE', false),
      templates: {
        subject: r.template('OTP_SUBJECT', 'Your code: {{code}}'),
        text: r.template('OTP_TEXT', DEFAULT_OTP_TEXT),
        html: r.template('OTP_HTML', ''),
      },
    },
    bounces: {
      domain: bounceDomain,
      listener:
        bouncePort === undefined
          ? undefined
          : {
              host: r.raw('BOUNCE_HOST') ?? '0.0.0.0',
              port: bouncePort,
              maxBytes: r.int('BOUNCE_MAX_BYTES', 2 * MIB, 64 * 1024, 100 * MIB),
              maxConnections: r.int('BOUNCE_MAX_CONNECTIONS', 50, 1, 10_000),
              perPeerPerSecond: r.int('BOUNCE_RATE_PER_PEER_PER_SECOND', 20, 1, 100_000),
            },
    },
    log: {
      level: r.oneOf<LogLevel>('LOG_LEVEL', LOG_LEVELS, 'info'),
      format: r.oneOf<LogFormat>('LOG_FORMAT', ['json', 'pretty'], 'json'),
    },
    shutdownTimeoutMs: seconds('SHUTDOWN_TIMEOUT_SECONDS', 10, 0, 3_600),
  };

  if (config.smtp.connection.backoffMaxMs < config.smtp.connection.backoffBaseMs) {
    r.problems.push('SMTP_BACKOFF_MAX_MS: expected at least SMTP_BACKOFF_BASE_MS');
  }
  const { otp } = config;
  const { templates } = otp;
  if (/[\r\n]/.test(templates.subject)) r.problems.push('OTP_SUBJECT: expected one line');
  if (!hasCodePlaceholder(templates.subject) && !hasCodePlaceholder(templates.text)) {
    r.problems.push('OTP_SUBJECT or OTP_TEXT: one of them must contain {{code}}');
  }
  if (templates.html !== '' && !hasCodePlaceholder(templates.html)) r.problems.push('OTP_HTML: expected {{code}} in it');
  if (config.smtp.connection.pipelineDepthMax < config.smtp.connection.pipelineDepth) r.problems.push('SMTP_PIPELINE_DEPTH_MAX: expected at least SMTP_PIPELINE_DEPTH');
  if (config.outbox.retryMaxMs < config.outbox.retryBaseMs) r.problems.push('OUTBOX_RETRY_MAX_SECONDS: expected at least OUTBOX_RETRY_BASE_SECONDS');
  if (config.outbox.store === 'redis' && config.redis === undefined) r.problems.push('OUTBOX_STORE=redis: needs REDIS_URL (or REDIS_SENTINELS)');
  if (config.redis !== undefined && otp.secret === undefined) {
    r.problems.push('OTP_SECRET: required with REDIS_URL, the same on every replica (each would hash codes with a key of its own, and no code would check out on another)');
  }
  if (r.problems.length > 0) {
    throw new MailroomError('ECONFIG', `invalid configuration:\n  ${r.problems.join('\n  ')}`);
  }
  return deepFreeze(config);
}

/** REDIS_URL, or REDIS_SENTINELS (host:port, …) and REDIS_SENTINEL_NAME; undefined: no Redis. */
function redisConfig(r: Reader): RedisSettings | undefined {
  const url = r.raw('REDIS_URL');
  const listed = r.raw('REDIS_SENTINELS');
  if (url === undefined && listed === undefined) return undefined;
  if (url !== undefined && !/^(rediss?:\/\/|\/)/.test(url)) r.problems.push(`REDIS_URL=${JSON.stringify(url)}: expected redis://, rediss:// or the path of a unix socket`);
  let sentinels: { host: string; port: number }[] | undefined;
  if (listed !== undefined) {
    sentinels = [];
    for (const entry of listed.split(',').map((e) => e.trim()).filter((e) => e !== '')) {
      const m = /^(\[[0-9a-f:.]+\]|[^:\s]+):(\d{1,5})$/i.exec(entry);
      const port = m === null ? NaN : Number(m[2]);
      if (m === null || port < 1 || port > 65_535) r.problems.push(`REDIS_SENTINELS=${JSON.stringify(listed)}: expected host:port, comma-separated (${JSON.stringify(entry)} is not)`);
      else sentinels.push({ host: (m[1] as string).replace(/^\[|\]$/g, ''), port });
    }
  }
  return {
    url,
    sentinels,
    sentinelName: r.raw('REDIS_SENTINEL_NAME') ?? 'mymaster',
    prefix: r.raw('REDIS_PREFIX') ?? 'mailroom:',
    commandTimeoutMs: r.int('REDIS_TIMEOUT_MS', 2_000, 10, 60_000),
    // Under Sentinel a failover must not lose what was acknowledged: one replica holds it first.
    minReplicas: r.int('OUTBOX_REDIS_MIN_REPLICAS', sentinels !== undefined ? 1 : 0, 0, 100),
  };
}

function authConfig(r: Reader): AuthSettings {
  const tokensFile = r.raw('AUTH_TOKENS_FILE');
  const tokens = r.tokens('AUTH_TOKENS_FILE');
  const certFile = r.raw('GRPC_TLS_CERT_FILE');
  const keyFile = r.raw('GRPC_TLS_KEY_FILE');
  const clientCaFile = r.raw('GRPC_TLS_CLIENT_CA_FILE');
  if ((certFile === undefined) !== (keyFile === undefined)) r.problems.push('GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE: set both for TLS on the gRPC port, or neither');
  if (clientCaFile !== undefined && certFile === undefined) r.problems.push('GRPC_TLS_CLIENT_CA_FILE: client certificates need TLS (GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE)');
  const tls = certFile !== undefined && keyFile !== undefined ? { certFile, keyFile, clientCaFile } : undefined;
  return {
    tokensFile,
    tokens,
    tls,
    allowUnauthenticated: r.bool('ALLOW_UNAUTHENTICATED', false),
    required: tokensFile !== undefined || (tls !== undefined && clientCaFile !== undefined),
  };
}

/** All three DKIM settings, or none; the key itself is read at boot (mail/dkim.ts). */
function dkimSettings(r: Reader): DkimSettings | undefined {
  const domain = r.raw('DKIM_DOMAIN');
  const selector = r.raw('DKIM_SELECTOR');
  const keyFile = r.raw('DKIM_PRIVATE_KEY_FILE');
  if (domain === undefined && selector === undefined && keyFile === undefined) return undefined;
  if (domain === undefined || selector === undefined || keyFile === undefined) {
    r.problems.push('DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE: set all three to sign, or none');
    return undefined;
  }
  const label = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
  if (!new RegExp(`^${label}(\\.${label})+$`, 'i').test(domain)) r.problems.push(`DKIM_DOMAIN=${JSON.stringify(domain)}: expected a domain name such as example.com`);
  if (!new RegExp(`^${label}(\\.${label})*$`, 'i').test(selector)) r.problems.push(`DKIM_SELECTOR=${JSON.stringify(selector)}: expected a selector such as mail2026 (letters, digits, hyphens, dots)`);
  return { domain, selector, keyFile };
}

function deepFreeze<T extends object>(value: T): T {
  for (const inner of Object.values(value)) {
    if (typeof inner === 'object' && inner !== null && (Array.isArray(inner) || Object.getPrototypeOf(inner) === Object.prototype)) deepFreeze(inner);
  }
  return Object.freeze(value);
}
