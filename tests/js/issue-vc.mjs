// Another issuer, for the tests: signs a credential with digitalbazaar's eddsa-jcs-2022
// cryptosuite, so our verifier is held against a signer nobody here wrote (JCS of floats and
// non-ASCII keys included).
//
//   node issue-vc.mjs --contexts DIR --credential UNSIGNED.json --seed HEX32
//
// The issuer is set to the seed's did:key; the signed credential is printed on stdout.
import {readFileSync} from 'node:fs';
import {join} from 'node:path';
import {parseArgs} from 'node:util';

import * as vc from '@digitalbazaar/vc';
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {createSignCryptosuite} from '@digitalbazaar/eddsa-jcs-2022-cryptosuite';
import * as Ed25519Multikey from '@digitalbazaar/ed25519-multikey';

const {values: args} = parseArgs({options: {
  contexts: {type: 'string'},
  credential: {type: 'string'},
  seed: {type: 'string'},
  created: {type: 'string'},
}});
const readJson = path => JSON.parse(readFileSync(path, 'utf8'));

const contexts = new Map();
for(const [url, file] of Object.entries(readJson(join(args.contexts, 'index.json')))) {
  contexts.set(url, readJson(join(args.contexts, file)));
}
async function documentLoader(url) {
  if(contexts.has(url)) {
    return {contextUrl: null, documentUrl: url, document: structuredClone(contexts.get(url))};
  }
  throw new Error(`static document loader: refusing to load ${url}`);
}

const keyPair = await Ed25519Multikey.generate({seed: Buffer.from(args.seed, 'hex')});
const did = `did:key:${keyPair.publicKeyMultibase}`;
keyPair.controller = did;
keyPair.id = `${did}#${keyPair.publicKeyMultibase}`;

const credential = {...readJson(args.credential), issuer: did};
const suite = new DataIntegrityProof({
  signer: keyPair.signer(), cryptosuite: createSignCryptosuite(),
  ...(args.created ? {date: args.created} : {}),
});
const signed = await vc.issue({credential, suite, documentLoader});
process.stdout.write(JSON.stringify(signed) + '\n');
