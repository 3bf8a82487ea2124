// grpc.reflection.v1 and v1alpha through @grpc/reflection, describing every
// service this server offers: mail.MailService, mail.OtpService and
// grpc.health.v1.Health, so that grpcurl, buf curl, Postman or Evans list and
// call them without a copy of the proto.
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as HEALTH_PROTO } from 'grpc-health-check';
import type * as grpc from '@grpc/grpc-js';
import { PROTO_LOADER_OPTIONS, PROTO_PATH } from './proto.js';

export function addReflection(server: grpc.Server): void {
  const definition = protoLoader.loadSync([PROTO_PATH, HEALTH_PROTO], PROTO_LOADER_OPTIONS);
  new ReflectionService(definition).addToServer(server);
}
