// Loads proto/mail.proto. PROTO_LOADER_OPTIONS must match the flags of the
// generate-types script (scripts/generate-types.sh), so the generated types
// describe exactly the objects this loader produces.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from '../generated/mail.js';

export const PROTO_PATH = fileURLToPath(new URL('../../../proto/mail.proto', import.meta.url));

export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

export function loadMailDefinition(): protoLoader.PackageDefinition {
  return protoLoader.loadSync(PROTO_PATH, PROTO_LOADER_OPTIONS);
}

export function loadMailProto(definition = loadMailDefinition()): ProtoGrpcType {
  return grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
}
