// Drives a many-org emulator with jsforce: each org logged in the way a real client would
// (OAuth username-password, and the SOAP login jsforce falls back to), each connection
// seeing its own org only.
// Env: WEFT_URL, WEFT_ORGS (JSON array of {orgId, clientId, clientSecret, username, password}),
// WEFT_MARKER (an Account Name that exists in the LAST org only). Exits non-zero on a mismatch.
'use strict';
const jsforce = require('jsforce');

function check(cond, msg) {
  if (!cond) {
    console.error('FAIL: ' + msg);
    process.exit(1);
  }
}

async function main() {
  const env = process.env;
  const orgs = JSON.parse(env.WEFT_ORGS);
  const marker = "SELECT COUNT() FROM Account WHERE Name = '" + env.WEFT_MARKER + "'";
  for (let i = 0; i < orgs.length; i++) {
    const o = orgs[i];
    const last = i === orgs.length - 1;
    const oauth = new jsforce.Connection({
      loginUrl: env.WEFT_URL,
      version: '60.0',
      oauth2: { clientId: o.clientId, clientSecret: o.clientSecret, loginUrl: env.WEFT_URL },
    });
    const info = await oauth.login(o.username, o.password);
    check(info.organizationId === o.orgId, 'OAuth login org ' + info.organizationId + ' vs ' + o.orgId);
    check(oauth.accessToken.startsWith(o.orgId.slice(0, 15) + '!'), 'token bound to its org');
    check((await oauth.query(marker)).totalSize === (last ? 1 : 0), 'marker visible in the last org only');
    const soap = new jsforce.Connection({ loginUrl: env.WEFT_URL, version: '60.0' });
    const s = await soap.login(o.username, o.password);
    check(s.organizationId === o.orgId, 'SOAP login org ' + s.organizationId + ' vs ' + o.orgId);
    check((await soap.query(marker)).totalSize === (last ? 1 : 0), 'SOAP session sees its org');
    // Sforce-Limit-Info counts this org's calls only: two queries (and the marker's create).
    const usage = soap.limitInfo.apiUsage.used;
    check(usage === (last ? 3 : 2), 'per-org api usage ' + usage);
  }
  console.log('jsforce many-org check ok: ' + orgs.length + ' orgs');
}

main().catch((e) => {
  console.error('FAIL: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
