// The gRPC server metrics of go-grpc-prometheus (grpc_server_started_total,
// grpc_server_handled_total, grpc_server_handling_seconds), from a server
// interceptor that sees every call and every status, its own refusals and
// the other interceptors' included. Installed only when metrics are on.
import * as grpc from '@grpc/grpc-js';
import type { PrometheusMetrics } from '../metrics/metrics.js';
import type { GrpcType } from '../metrics/service-metrics.js';

function grpcType(method: grpc.ServerMethodDefinition<unknown, unknown>): GrpcType {
  if (method.requestStream) return method.responseStream ? 'bidi_stream' : 'client_stream';
  return method.responseStream ? 'server_stream' : 'unary';
}

export function metricsInterceptor(metrics: PrometheusMetrics): grpc.ServerInterceptor {
  return (method, call) => {
    const type = grpcType(method);
    const series = metrics.callStarted(method.path, type);
    const started = process.hrtime.bigint();
    let counted = false;
    const count = (code: number): void => {
      if (counted) return;
      counted = true;
      metrics.callHandled(series, code, Number(process.hrtime.bigint() - started) / 1e9);
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => next({ onCancel: () => count(grpc.status.CANCELLED) }),
      sendStatus: (status, next) => {
        count(status.code);
        next(status);
      },
    });
  };
}
