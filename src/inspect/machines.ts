// The machines whose charts are drawn into docs/ (npm run charts), and how.
import type { AnyStateMachine } from 'xstate';
import { otpMachine } from '../actors/otp.js';
import { smtpConnectionMachine } from '../actors/smtp-connection.js';
import { supervisorMachine } from '../actors/supervisor.js';
import { messageMachine } from '../outbox/lifecycle.js';
import { chartOf, renderChart } from './chart.js';

export const MACHINES: readonly AnyStateMachine[] = [supervisorMachine, smtpConnectionMachine, otpMachine, messageMachine];

export function chartFile(machine: AnyStateMachine): string {
  return `${machine.id}.svg`;
}

export function drawChart(machine: AnyStateMachine): Promise<string> {
  return renderChart(chartOf(machine));
}
