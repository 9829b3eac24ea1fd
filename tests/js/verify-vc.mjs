// An independent verifier for SealTrail credentials: digitalbazaar's @digitalbazaar/vc with
// @digitalbazaar/data-integrity and @digitalbazaar/eddsa-jcs-2022-cryptosuite, a static
// document loader (no network), did:key resolved by @digitalbazaar/did-method-key, did:web
// from DID document files given on the command line. None of our Python code is used: the
// contexts are read from the package's contexts/ directory as plain files.
//
//   node verify-vc.mjs --contexts DIR --credential FILE [--did-document FILE ...]
//                      [--status-list FILE] [--expand]
//
// Prints one JSON line: {verified, error, status, expanded}. Exit 0 if every requested check
// passed (signature and data model; not revoked, if --status-list; JSON-LD safe-mode
// expansion, if --expand), 1 if one failed, 2 on a usage error.
import {readFileSync} from 'node:fs';
import {join} from 'node:path';
import {parseArgs} from 'node:util';

import * as vc from '@digitalbazaar/vc';
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {createVerifyCryptosuite} from '@digitalbazaar/eddsa-jcs-2022-cryptosuite';
import * as Ed25519Multikey from '@digitalbazaar/ed25519-multikey';
import * as didKey from '@digitalbazaar/did-method-key';
import {checkStatus} from '@digitalbazaar/vc-bitstring-status-list';
import jsonld from 'jsonld';

const MULTIKEY_V1 = 'https://w3id.org/security/multikey/v1';

function usage(message) {
  process.stderr.write(`verify-vc.mjs: ${message}\n`);
  process.exit(2);
}

let args;
try {
  ({values: args} = parseArgs({options: {
    contexts: {type: 'string'},
    credential: {type: 'string'},
    'did-document': {type: 'string', multiple: true, default: []},
    'status-list': {type: 'string'},
    expand: {type: 'boolean', default: false},
  }}));
} catch(e) {
  usage(e.message);
}
if(!args.contexts || !args.credential) {
  usage('--contexts DIR and --credential FILE are required');
}

const readJson = path => JSON.parse(readFileSync(path, 'utf8'));

const contexts = new Map();
for(const [url, file] of Object.entries(readJson(join(args.contexts, 'index.json')))) {
  contexts.set(url, readJson(join(args.contexts, file)));
}
const didDocuments = new Map();
for(const path of args['did-document']) {
  const doc = readJson(path);
  didDocuments.set(doc.id, doc);
}
const statusLists = new Map();
if(args['status-list']) {
  const list = readJson(args['status-list']);
  statusLists.set(list.id, list);
}

const didKeyDriver = didKey.driver();
didKeyDriver.use({multibaseMultikeyHeader: 'z6Mk', fromMultibase: Ed25519Multikey.from});

const loaded = document => ({contextUrl: null, documentUrl: null, document});

async function documentLoader(url) {
  if(contexts.has(url)) {
    return {...loaded(structuredClone(contexts.get(url))), documentUrl: url};
  }
  if(url.startsWith('did:key:')) {
    return {...loaded(await didKeyDriver.get({url})), documentUrl: url};
  }
  if(url.startsWith('did:')) {
    const [did, fragment] = url.split('#');
    const doc = didDocuments.get(did);
    if(!doc) {
      throw new Error(`no DID document given for ${did}`);
    }
    if(!fragment) {
      return {...loaded(structuredClone(doc)), documentUrl: url};
    }
    const method = (doc.verificationMethod || []).find(
      vm => vm.id === url || vm.id === `#${fragment}`);
    if(!method) {
      throw new Error(`${url} is not in the DID document of ${did}`);
    }
    return {...loaded({'@context': MULTIKEY_V1, ...method, id: url}), documentUrl: url};
  }
  if(statusLists.has(url)) {
    return {...loaded(structuredClone(statusLists.get(url))), documentUrl: url};
  }
  throw new Error(`static document loader: refusing to load ${url}`);
}

const credential = readJson(args.credential);
const suite = new DataIntegrityProof({cryptosuite: createVerifyCryptosuite()});
const out = {verified: false, error: null, status: null, expanded: null};
let ok = true;

try {
  const options = {credential: structuredClone(credential), suite, documentLoader};
  if(credential.credentialStatus) {
    options.checkStatus = args['status-list'] ?
      opts => checkStatus({...opts, suite, documentLoader}) :
      async () => ({verified: true, unchecked: true});
  }
  const result = await vc.verifyCredential(options);
  out.verified = result.verified;
  if(!result.verified) {
    const errors = [result.error, ...(result.results || []).map(r => r.error)]
      .filter(Boolean).flatMap(e => e.errors || [e]);
    out.error = [...new Set(errors.map(e => e.message))].join('; ') || 'not verified';
  }
  if(result.statusResult && args['status-list']) {
    const sr = result.statusResult;
    out.status = {
      verified: sr.verified,
      revoked: (sr.results || []).some(r => r.status === true),
      error: sr.error ? sr.error.message : null,
    };
    if(!sr.verified || out.status.revoked) {
      ok = false;
    }
  }
  ok = ok && result.verified;
} catch(e) {
  out.error = e.message;
  ok = false;
}

if(args.expand) {
  try {
    await jsonld.expand(structuredClone(credential), {documentLoader, safe: true});
    out.expanded = true;
  } catch(e) {
    out.expanded = false;
    out.error = [out.error, `JSON-LD expansion (safe mode): ${e.message}`]
      .filter(Boolean).join('; ');
    ok = false;
  }
}

process.stdout.write(JSON.stringify(out) + '\n');
process.exit(ok ? 0 : 1);
