#!/usr/bin/env bash
# Generates TypeScript types for proto/mail.proto into src/generated (git-ignored).
# The flags must match PROTO_LOADER_OPTIONS in src/rpc/proto.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf src/generated
npx proto-loader-gen-types --keepCase --longs=String --enums=String --defaults --oneofs \
  --grpcLib=@grpc/grpc-js --outDir=src/generated proto/mail.proto >/dev/null
# The generator writes extensionless relative imports; marking the folder CommonJS
# lets NodeNext resolution accept them (the files hold types only, nothing runs).
echo '{ "type": "commonjs" }' > src/generated/package.json
# The generator's one helper type constrains constructors with `any`; `never`
# parameters and an `unknown` result accept the same constructors.
sed -i 's/new (\.\.\.args: any) => any/new (...args: never) => unknown/' src/generated/mail.ts
