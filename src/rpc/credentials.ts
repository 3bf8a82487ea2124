// TLS on the gRPC port (GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE) and client
// certificates (GRPC_TLS_CLIENT_CA_FILE: mTLS, required). The files are read
// at boot and again on reload (SIGHUP); grpc-js takes new ones through its
// certificate-provider credentials, so connections open keep theirs and new
// ones get the new pair. A set of files that does not load (missing,
// unreadable, a key that does not match its certificate) stops boot, and on
// reload keeps what was loaded before.
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { MailroomError } from '../errors.js';

export interface GrpcTlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** set: clients must present a certificate this CA signed */
  readonly clientCaFile: string | undefined;
}

type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;

interface Loaded {
  readonly certificate: Buffer;
  readonly privateKey: Buffer;
  readonly ca: Buffer | undefined;
}

function load(files: GrpcTlsFiles): Loaded {
  const read = (name: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new MailroomError('ECONFIG', `${name}=${JSON.stringify(path)}: expected a readable PEM file (${(err as Error).message})`);
    }
  };
  const loaded = {
    certificate: read('GRPC_TLS_CERT_FILE', files.certFile),
    privateKey: read('GRPC_TLS_KEY_FILE', files.keyFile),
    ca: files.clientCaFile === undefined ? undefined : read('GRPC_TLS_CLIENT_CA_FILE', files.clientCaFile),
  };
  try {
    // What the TLS server will do with them: a key that does not match, or a
    // file that is not PEM, fails here and not at a client's handshake.
    createSecureContext({ cert: loaded.certificate, key: loaded.privateKey, ca: loaded.ca });
  } catch (err) {
    throw new MailroomError('ECONFIG', `GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE, GRPC_TLS_CLIENT_CA_FILE: do not load together (${(err as Error).message})`);
  }
  return loaded;
}

/** The certificates of the gRPC port, as a grpc-js certificate provider that can be told to read them again. */
export class ServerCertificates implements grpc.experimental.CertificateProvider {
  private loaded: Loaded;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();

  /** Throws ECONFIG when the files do not load. */
  constructor(private readonly files: GrpcTlsFiles) {
    this.loaded = load(files);
  }

  get mutual(): boolean {
    return this.files.clientCaFile !== undefined;
  }

  credentials(): grpc.ServerCredentials {
    // grpc-js names its first parameter for the CA provider, but hands it to
    // the credentials as the identity provider (1.14): this one is both.
    return grpc.experimental.createCertificateProviderServerCredentials(this, this.mutual ? this : null, this.mutual);
  }

  /** Reads the files again; throws ECONFIG and keeps the pair in use when they do not load. */
  reload(): void {
    this.loaded = load(this.files);
    for (const listener of this.identityListeners) listener({ certificate: this.loaded.certificate, privateKey: this.loaded.privateKey });
    if (this.loaded.ca !== undefined) for (const listener of this.caListeners) listener({ caCertificate: this.loaded.ca });
  }

  // TRAP: grpc-js (1.14) adds these listeners before the watcher that
  // applies what they deliver; a certificate handed over at once would be
  // lost, and every connection dropped as "unloaded credentials". Deliver
  // on the next microtask, as its own file-watching provider does.
  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    queueMicrotask(() => {
      if (this.caListeners.has(listener) && this.loaded.ca !== undefined) listener({ caCertificate: this.loaded.ca });
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.identityListeners.has(listener)) listener({ certificate: this.loaded.certificate, privateKey: this.loaded.privateKey });
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }
}
