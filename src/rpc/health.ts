// grpc.health.v1 (Check, Watch, List) through grpc-health-check, from what
// the service can do: mail.MailService serves while at least one SMTP
// connection is usable; mail.OtpService while that holds and its store
// answers (Redis, when configured); mailroom.outbox while the outbox store
// can write (its failure leaves the rest serving: SYNC mail and codes do
// not need it); "" (the whole server, what a Kubernetes probe asks by
// default) follows mail.MailService. From the moment shutdown
// begins every one is NOT_SERVING, and Watch streams hear it before the
// drain starts. Statuses are set only when they change, so a Watch stream
// gets one message per change.
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import type * as grpc from '@grpc/grpc-js';

export const HEALTH_SERVICES = ['', 'mail.MailService', 'mail.OtpService', 'mailroom.outbox'] as const;
type Service = (typeof HEALTH_SERVICES)[number];

export class ServiceHealth {
  private readonly impl: HealthImplementation;
  private readonly current = new Map<Service, ServingStatus>();
  private relayUp = false;
  private storeUp = true;
  private outboxUp = false;
  private stopping = false;

  constructor() {
    for (const s of HEALTH_SERVICES) this.current.set(s, 'NOT_SERVING');
    this.impl = new HealthImplementation(Object.fromEntries(this.current));
  }

  addToServer(server: grpc.Server): void {
    this.impl.addToServer(server);
  }

  /** How many SMTP connections are usable now. */
  relay(up: number): void {
    this.relayUp = up > 0;
    this.publish();
  }

  /** Whether the OTP store answers. */
  store(up: boolean): void {
    this.storeUp = up;
    this.publish();
  }

  /** Whether the outbox store can write. */
  outbox(up: boolean): void {
    this.outboxUp = up;
    this.publish();
  }

  /** Shutdown began (or a root actor failed): nothing serves from now on. */
  stop(): void {
    this.stopping = true;
    this.publish();
  }

  private publish(): void {
    const mail: ServingStatus = this.relayUp && !this.stopping ? 'SERVING' : 'NOT_SERVING';
    const otp: ServingStatus = mail === 'SERVING' && this.storeUp ? 'SERVING' : 'NOT_SERVING';
    this.set('', mail);
    this.set('mail.MailService', mail);
    this.set('mail.OtpService', otp);
    this.set('mailroom.outbox', this.outboxUp && !this.stopping ? 'SERVING' : 'NOT_SERVING');
  }

  private set(service: Service, status: ServingStatus): void {
    if (this.current.get(service) === status) return;
    this.current.set(service, status);
    this.impl.setStatus(service, status);
  }
}
