// A throwaway CA made with openssl, for the tests and the benchmark: a server
// certificate for 127.0.0.1 and localhost signed by it, a self-signed pair no
// client trusts, and client certificates on demand.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pki {
  readonly dir: string;
  readonly caFile: string;
  readonly ca: string;
  readonly server: { key: string; cert: string; keyFile: string; certFile: string };
  readonly untrusted: { key: string; cert: string; keyFile: string; certFile: string };
}

export interface IssuedPair {
  readonly key: string;
  readonly cert: string;
  readonly keyFile: string;
  readonly certFile: string;
}

/** A client certificate for `cn`, signed by the CA (`signer`: another PKI's CA instead). */
export function issueClient(pki: Pki, cn: string, signer: Pki = pki): IssuedPair {
  const ssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: pki.dir, stdio: 'ignore' });
  };
  const name = `client-${cn.replace(/[^A-Za-z0-9]/g, '_')}-${signer === pki ? 'own' : 'other'}`;
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
  writeFileSync(join(pki.dir, `${name}.ext`), 'extendedKeyUsage=clientAuth\n');
  ssl('x509', '-req', '-in', `${name}.csr`, '-CA', join(signer.dir, 'ca.pem'), '-CAkey', join(signer.dir, 'ca.key'), '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
  const keyFile = join(pki.dir, `${name}.key`);
  const certFile = join(pki.dir, `${name}.pem`);
  return { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8'), keyFile, certFile };
}

export function makePki(label: string): Pki {
  const dir = mkdtempSync(join(tmpdir(), `mailroom-${label}-pki-`));
  const ssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  };
  const san = 'subjectAltName=DNS:localhost,IP:127.0.0.1';
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', `/CN=mailroom ${label} CA`);
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'san.ext'), `${san}\n`);
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext');
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rogue.key', '-out', 'rogue.pem', '-days', '2', '-subj', '/CN=localhost', '-addext', san);
  const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    ca: read('ca.pem'),
    server: { key: read('server.key'), cert: read('server.pem'), keyFile: join(dir, 'server.key'), certFile: join(dir, 'server.pem') },
    untrusted: { key: read('rogue.key'), cert: read('rogue.pem'), keyFile: join(dir, 'rogue.key'), certFile: join(dir, 'rogue.pem') },
  };
}
