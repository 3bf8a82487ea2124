// Checks reach the OTP actor as one event per run of synchronous code, not
// one per call: a burst costs the machine one macrostep. They still go
// through its mailbox in arrival order and are answered one by one. The
// batch closes at the end of the microtask run, not of the event-loop turn
// (grpc-js hands over about one call a turn; see docs/decisions.md).
import { withResolvers } from '../lib/resolvers.js';
import type { MailroomError } from '../errors.js';
import type { CodeHash } from './code.js';
import type { CheckRequest, OtpMailbox } from './requests.js';

/** How a check's caller is told its result (a number from the store), or why there is none. */
export interface CheckAnswers<C> {
  answer(caller: C, result: number): void;
  fail(caller: C, error: MailroomError): void;
}

export class CheckBatcher<C> {
  private checks: CheckRequest[] = [];
  private callers: C[] = [];

  constructor(
    private readonly otp: OtpMailbox,
    private readonly answers: CheckAnswers<C>,
  ) {}

  check(key: string, hash: CodeHash, caller: C): void {
    if (this.checks.length === 0) queueMicrotask(this.flush);
    this.checks.push({ key, hash });
    this.callers.push(caller);
  }

  private readonly flush = (): void => {
    const { checks, callers, answers } = this;
    this.checks = [];
    this.callers = [];
    const { reply, answer } = withResolvers<number[]>();
    this.otp.send({ type: 'code.checks', checks, reply });
    answer.then(
      (results) => {
        for (let i = 0; i < callers.length; i++) answers.answer(callers[i] as C, results[i] as number);
      },
      (error: MailroomError) => {
        for (const caller of callers) answers.fail(caller, error);
      },
    );
  };
}
