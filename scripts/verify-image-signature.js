#!/usr/bin/env node
// The outside judge of image signatures (make test): sigstore-js (@sigstore/verify, the Sigstore
// project's JavaScript verifier) checks an image's cosign signature and its SBOM attestation, read
// straight from the registry here, against a public key. Nothing of the toolkit runs.
//
//   node scripts/verify-image-signature.js REGISTRY REPOSITORY DIGEST PUBLIC_KEY_PEM [USER:PASSWORD]
//
// The signature (tag sha256-<hex>.sig: a simple-signing payload, its ECDSA signature in the layer
// annotation) is handed to sigstore-js as a public-key message-signature bundle over the payload;
// the SBOM attestation (sha256-<hex>.att: a DSSE envelope) as a DSSE bundle. Neither has a
// transparency-log entry or timestamp (signed offline with a key), so those thresholds are 0.
// sigstore-js proves who signed what; this script checks what the signed statements say: that the
// payload names DIGEST, that DIGEST is the sha256 of the manifest the registry serves, and that the
// attestation's subject is DIGEST with a CycloneDX predicate. Prints a JSON verdict; exit 0 only
// when both verify.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const { bundleFromJSON } = require('@sigstore/bundle');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

const [registry, repository, digest, keyFile, credentials] = process.argv.slice(2);
if (!keyFile) {
  console.error('usage: verify-image-signature.js REGISTRY REPOSITORY DIGEST PUBLIC_KEY_PEM [USER:PASSWORD]');
  process.exit(2);
}
const base = `${/^(127\.0\.0\.1|localhost)(:|$)/.test(registry) ? 'http' : 'https'}://${registry}/v2/${repository}`;
const headers = credentials ? { Authorization: 'Basic ' + Buffer.from(credentials).toString('base64') } : {};
const MANIFESTS = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';
const sha256 = (bytes) => crypto.createHash('sha256').update(bytes).digest();

async function get(path, accept) {
  const response = await fetch(`${base}/${path}`, { headers: { ...headers, ...(accept ? { Accept: accept } : {}) } });
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

async function layers(tag, mediaType) {
  const manifest = await get(`manifests/${tag}`, MANIFESTS);
  if (!manifest) return [];
  const chosen = JSON.parse(manifest).layers.filter((layer) => layer.mediaType === mediaType);
  return Promise.all(chosen.map(async (layer) => ({ layer, blob: await get(`blobs/${layer.digest}`) })));
}

const hint = 'environment-key';
const der = crypto.createPublicKey(fs.readFileSync(keyFile)).export({ type: 'spki', format: 'der' });
const trust = toTrustMaterial({ certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] },
  { [hint]: { rawBytes: der, keyDetails: 'PKIX_ECDSA_P256_SHA_256' } });
const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
const material = { publicKey: { hint }, tlogEntries: [], timestampVerificationData: { rfc3161Timestamps: [] } };
const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';

function check(name, fn) {
  try {
    fn();
    return { ok: true };
  } catch (error) {
    return { ok: false, reason: `${name}: ${error.message || error}` };
  }
}

function verifySignature({ layer, blob }) {
  const signature = (layer.annotations || {})['dev.cosignproject.cosign/signature'] || '';
  const bundle = bundleFromJSON({
    mediaType: BUNDLE, verificationMaterial: material,
    messageSignature: { messageDigest: { algorithm: 'SHA2_256', digest: sha256(blob).toString('base64') }, signature },
  });
  verifier.verify(toSignedEntity(bundle, blob));
  const named = JSON.parse(blob).critical.image['docker-manifest-digest'];
  if (named !== digest) throw new Error(`the signed payload names ${named}, not ${digest}`);
}

function verifyAttestation({ blob }) {
  const envelope = JSON.parse(blob);
  verifier.verify(toSignedEntity(bundleFromJSON({ mediaType: BUNDLE, verificationMaterial: material, dsseEnvelope: envelope })));
  const statement = JSON.parse(Buffer.from(envelope.payload, 'base64'));
  const [algorithm, hex] = digest.split(':');
  if (!statement.subject.some((subject) => (subject.digest || {})[algorithm] === hex)) throw new Error(`the statement is not about ${digest}`);
  if (statement.predicateType !== 'https://cyclonedx.org/bom') throw new Error(`predicate ${statement.predicateType} is not CycloneDX`);
  return statement.predicate;
}

(async () => {
  const manifest = await get(`manifests/${digest}`, MANIFESTS);
  const verdict = { image: `${registry}/${repository}@${digest}`, manifest: false, signature: false, sbom: false, reasons: [] };
  verdict.manifest = !!manifest && `sha256:${sha256(manifest).toString('hex')}` === digest;
  if (!verdict.manifest) verdict.reasons.push('the registry has no manifest whose sha256 is the digest');
  const [algorithm, hex] = digest.split(':');
  const signatures = await layers(`${algorithm}-${hex}.sig`, 'application/vnd.dev.cosign.simplesigning.v1+json');
  if (!signatures.length) verdict.reasons.push('no signature');
  for (const entry of signatures) {
    const result = check('signature', () => verifySignature(entry));
    verdict.signature = verdict.signature || result.ok;
    if (!result.ok) verdict.reasons.push(result.reason);
  }
  const attestations = await layers(`${algorithm}-${hex}.att`, 'application/vnd.dsse.envelope.v1+json');
  if (!attestations.length) verdict.reasons.push('no SBOM attestation');
  for (const entry of attestations) {
    let predicate = null;
    const result = check('sbom', () => { predicate = verifyAttestation(entry); });
    if (result.ok) {
      verdict.sbom = true;
      verdict.components = (predicate.components || []).map((c) => `${c.name}@${c.version}`);
    } else verdict.reasons.push(result.reason);
  }
  console.log(JSON.stringify(verdict));
  process.exit(verdict.manifest && verdict.signature && verdict.sbom ? 0 : 1);
})().catch((error) => {
  console.error(`verify-image-signature: ${error.message || error}`);
  process.exit(2);
});
