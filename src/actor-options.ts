// What the actors are started with, from the parsed configuration: the
// pool's limits and its connections' sessions, ready to use (the relay's
// TLS context built once), and the OTP actor's rules.
import type { Config } from './config.js';
import type { OtpOptions } from './actors/otp.js';
import type { SupervisorOptions } from './actors/supervisor.js';
import { withTlsContext } from './smtp/tls.js';

/** `relay`: where the pool dials (the configured relay, or the capture server's port). */
export function supervisorOptions(config: Config, relay: { readonly host: string; readonly port: number }): SupervisorOptions {
  const { smtp, queue } = config;
  return {
    workers: config.workers,
    queueLimit: queue.limit,
    maxAttempts: queue.maxAttempts,
    rateLimitPerSecond: queue.rateLimitPerSecond,
    queueTimeoutMs: queue.queueTimeoutMs,
    retryBaseMs: smtp.backoffBaseMs,
    retryMaxMs: smtp.backoffMaxMs,
    unreachableAfterMs: smtp.unreachableAfterMs,
    // QUIT after the drain is a courtesy: it must not stretch the shutdown
    // by a whole command timeout (30 s by default) past its deadline.
    closeTimeoutMs: Math.min(smtp.session.commandTimeoutMs, 2000),
    connection: {
      keepaliveMs: smtp.keepaliveMs,
      maxMessagesPerConnection: smtp.maxMessagesPerConnection,
      pipelineDepth: smtp.pipelineDepth,
      backoffBaseMs: smtp.backoffBaseMs,
      backoffMaxMs: smtp.backoffMaxMs,
      session: withTlsContext({ ...smtp.session, ...relay }),
    },
  };
}

export function otpOptions(config: Config): OtpOptions {
  const { otp } = config;
  return {
    length: otp.length,
    lifespanMs: otp.lifespanMs,
    resendCooldownMs: otp.resendCooldownMs,
    cleanupMs: otp.cleanupMs,
    returnCode: otp.returnCode,
    templates: { subject: otp.subjectTemplate, text: otp.textTemplate, html: otp.htmlTemplate },
  };
}
