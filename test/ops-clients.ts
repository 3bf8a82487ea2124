// Clients for what generic gRPC tools ask of mailroom: grpc.health.v1 and
// server reflection (v1 and v1alpha), loaded from the protos the server's
// own packages ship, so that the tests speak exactly those protocols.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as HEALTH_PROTO } from 'grpc-health-check';

const require = createRequire(import.meta.url);
const REFLECTION_PROTOS = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto');
const OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

type Ctor = new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client;

function service(file: string, includeDirs: string[], name: string): Ctor {
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(file, { ...OPTIONS, includeDirs }));
  let node: unknown = pkg;
  for (const part of name.split('.')) node = (node as Record<string, unknown>)[part];
  return node as Ctor;
}

export interface HealthClient extends grpc.Client {
  Check(req: { service: string }, metadata: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void;
  List(req: object, cb: (err: grpc.ServiceError | null, res?: { statuses: Record<string, { status: string }> }) => void): void;
  Watch(req: { service: string }): grpc.ClientReadableStream<{ status: string }>;
}

export function healthClient(address: string, credentials = grpc.credentials.createInsecure()): HealthClient {
  return new (service(HEALTH_PROTO, [], 'grpc.health.v1.Health'))(address, credentials) as HealthClient;
}

/** Check `service` with no credentials at all: health is open to everyone. */
export function check(client: HealthClient, svc: string): Promise<string> {
  return new Promise((resolve, reject) => client.Check({ service: svc }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res?.status ?? ''))));
}

export interface ReflectionReply {
  readonly list_services_response?: { service: { name: string }[] };
  readonly file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  readonly error_response?: { error_code: number; error_message: string };
}

/** One reflection request on a fresh stream; `version` picks grpc.reflection.v1 or v1alpha. */
export function reflect(address: string, version: 'v1' | 'v1alpha', request: Record<string, string>, metadata = new grpc.Metadata()): Promise<ReflectionReply> {
  const Client = service(join(REFLECTION_PROTOS, 'grpc', 'reflection', version, 'reflection.proto'), [REFLECTION_PROTOS], `grpc.reflection.${version}.ServerReflection`);
  const client = new Client(address, grpc.credentials.createInsecure()) as grpc.Client & {
    ServerReflectionInfo(metadata: grpc.Metadata): grpc.ClientDuplexStream<Record<string, string>, ReflectionReply>;
  };
  const stream = client.ServerReflectionInfo(metadata);
  return new Promise((resolve, reject) => {
    stream.once('data', (reply: ReflectionReply) => {
      stream.end();
      client.close();
      resolve(reply);
    });
    stream.once('error', (err) => {
      client.close();
      reject(err);
    });
    stream.write(request);
  });
}
