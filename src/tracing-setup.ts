// OpenTelemetry, loaded by main.ts before anything imports grpc-js, and only
// when an OTLP endpoint is configured (lib/tracing.ts says when): the SDK
// 2.x line (Node 20: its 3.x line and the 0.30x exporters need Node 22),
// instrumentation-grpc for the SERVER spans, W3C trace context, and the
// exporter OTEL_EXPORTER_OTLP_PROTOCOL names. Variables are the standard
// ones, from the environment or .env; a value it cannot use stops boot.
//
// grpc-js is CommonJS imported from ES modules: the instrumentation sees it
// only through the import-in-the-middle hook, registered here first.
import { register } from 'node:module';
import { MailroomError } from './errors.js';
import { tracingStarted } from './lib/tracing.js';

type Env = Readonly<Record<string, string | undefined>>;

const PROTOCOLS = ['http/protobuf', 'http/json', 'grpc'] as const;
type Protocol = (typeof PROTOCOLS)[number];

/** Methods never traced: health checks and reflection, and the OTLP gRPC exporter's own calls. */
const UNTRACED = [/^Check$/, /^Watch$/, /^ServerReflectionInfo$/, /^Export$/];

function bad(name: string, value: string, expected: string): MailroomError {
  return new MailroomError('ECONFIG', `invalid configuration:\n  ${name}=${JSON.stringify(value)}: expected ${expected}`);
}

export async function startTracing(env: Env): Promise<void> {
  const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf') as Protocol;
  if (!PROTOCOLS.includes(protocol)) throw bad('OTEL_EXPORTER_OTLP_PROTOCOL', protocol, PROTOCOLS.join(', '));
  register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);
  const base = await import('@opentelemetry/sdk-trace-base');
  const { NodeTracerProvider } = await import('@opentelemetry/sdk-trace-node');
  const { defaultResource, resourceFromAttributes } = await import('@opentelemetry/resources');
  const { registerInstrumentations } = await import('@opentelemetry/instrumentation');
  const { GrpcInstrumentation } = await import('@opentelemetry/instrumentation-grpc');

  const sampler = samplerFrom(env, base);
  const tracesEndpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  const endpoint = (env.OTEL_EXPORTER_OTLP_ENDPOINT ?? '').replace(/\/+$/, '');
  const url = tracesEndpoint ?? (protocol === 'grpc' ? endpoint : `${endpoint}/v1/traces`);
  const exporter =
    protocol === 'grpc'
      ? new (await import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter({ url })
      : protocol === 'http/json'
        ? new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter({ url })
        : new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter({ url });
  const delay = Number(env.OTEL_BSP_SCHEDULE_DELAY ?? 5000);
  const provider = new NodeTracerProvider({
    sampler,
    resource: defaultResource().merge(resourceFromAttributes({ 'service.name': env.OTEL_SERVICE_NAME ?? 'mailroom' })),
    spanProcessors: [new base.BatchSpanProcessor(exporter, { scheduledDelayMillis: Number.isFinite(delay) && delay >= 0 ? delay : 5000 })],
  });
  provider.register();
  registerInstrumentations({ instrumentations: [new GrpcInstrumentation({ ignoreGrpcMethods: UNTRACED })] });
  tracingStarted(() => provider.shutdown());
}

type Sdk = typeof import('@opentelemetry/sdk-trace-base');

/** OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, as the specification names them; default parentbased_always_on. */
function samplerFrom(env: Env, sdk: Sdk): InstanceType<Sdk['AlwaysOnSampler']> | InstanceType<Sdk['ParentBasedSampler']> | InstanceType<Sdk['AlwaysOffSampler']> | InstanceType<Sdk['TraceIdRatioBasedSampler']> {
  const name = (env.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on').toLowerCase();
  const arg = env.OTEL_TRACES_SAMPLER_ARG;
  const ratio = (): number => {
    const r = arg === undefined ? 1 : Number(arg);
    if (!Number.isFinite(r) || r < 0 || r > 1) throw bad('OTEL_TRACES_SAMPLER_ARG', arg ?? '', 'a ratio from 0 to 1');
    return r;
  };
  switch (name) {
    case 'always_on':
      return new sdk.AlwaysOnSampler();
    case 'always_off':
      return new sdk.AlwaysOffSampler();
    case 'traceidratio':
      return new sdk.TraceIdRatioBasedSampler(ratio());
    case 'parentbased_always_on':
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(ratio()) });
    default:
      throw bad('OTEL_TRACES_SAMPLER', name, 'always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio');
  }
}
