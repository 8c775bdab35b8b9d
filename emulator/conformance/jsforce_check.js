// Drives the emulator with jsforce (a client nobody here wrote).
// Env: WEFT_URL (http://127.0.0.1:PORT), WEFT_TOKEN, WEFT_CLIENT_ID, WEFT_CLIENT_SECRET,
// WEFT_USERNAME, WEFT_PASSWORD. Exits non-zero on the first mismatch.
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
  const conn = new jsforce.Connection({ instanceUrl: env.WEFT_URL, accessToken: env.WEFT_TOKEN, version: '60.0' });

  // REST query with automatic paging through nextRecordsUrl.
  const count = await conn.query('SELECT COUNT() FROM Account');
  const total = count.totalSize;
  check(total > 2000, 'need > 2000 accounts, got ' + total);
  const records = [];
  await new Promise((resolve, reject) => {
    conn.query('SELECT Id, Name, Owner.Name FROM Account')
      .on('record', (r) => records.push(r))
      .on('end', resolve)
      .on('error', reject)
      .run({ autoFetch: true, maxFetch: 1000000 });
  });
  check(records.length === total, 'autoFetch returned ' + records.length + ' of ' + total);
  check(records[0].Owner && records[0].Owner.Name, 'parent relationship');
  check(conn.limitInfo && conn.limitInfo.apiUsage && conn.limitInfo.apiUsage.limit > 0, 'limitInfo parsed');

  const all = await conn.query('SELECT Id FROM Account WHERE IsDeleted = true', { scanAll: true });
  check(all.totalSize > 0, 'queryAll sees deleted rows');

  // Bulk 2.0 query: jsforce loops until Sforce-Locator is the literal "null".
  const rows = await (await conn.bulk2.query('SELECT Id, Name, Description FROM Account')).toArray();
  check(rows.length === total, 'bulk2 rows ' + rows.length + ' vs ' + total);
  check(rows.every((r) => typeof r.Id === 'string' && r.Id.length === 18), 'bulk2 ids');

  // Bulk 2.0 ingest through jsforce's own job handling (upload, close, poll, results).
  const load = await conn.bulk2.loadAndWaitForResults({
    object: 'Account',
    operation: 'insert',
    // jsforce takes the CSV header from the first record, so every record has the same keys.
    input: [
      { Name: 'JS Bulk 1', Description: 'quoted "text", commas', Tier__c: 'Gold' },
      { Name: 'JS Bulk 2', Description: 'line one\nline two', Tier__c: 'Silver' },
      { Name: 'JS Bulk 3', Description: 'bad tier', Tier__c: 'Platinum' },
    ],
    pollInterval: 100,
    pollTimeout: 30000,
  });
  check(load.successfulResults.length === 2, 'bulk2 ingest successes: ' + JSON.stringify(load.successfulResults));
  check(
    load.failedResults.length === 1 && /INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST/.test(load.failedResults[0].sf__Error),
    'bulk2 ingest failures: ' + JSON.stringify(load.failedResults),
  );
  check(load.unprocessedRecords.length === 0, 'bulk2 ingest unprocessed');

  // Username-password login against the emulator's token endpoint, then a DML round trip.
  const conn2 = new jsforce.Connection({
    loginUrl: env.WEFT_URL,
    version: '60.0',
    oauth2: { clientId: env.WEFT_CLIENT_ID, clientSecret: env.WEFT_CLIENT_SECRET, loginUrl: env.WEFT_URL },
  });
  const info = await conn2.login(env.WEFT_USERNAME, env.WEFT_PASSWORD);
  check(info.organizationId && info.id, 'login user info from id URL');
  const ret = await conn2.sobject('Account').create({ Name: 'From jsforce' });
  check(ret.success, 'create');
  const up = await conn2.sobject('Account').upsert({ Name: 'JS Upsert', External_Id__c: 'JS-1' }, 'External_Id__c');
  check(up.success, 'upsert');
  const many = await conn2.sobject('Contact').create([{ LastName: 'A' }, { Email: 'no-last-name@example.com' }]);
  check(many[0].success && !many[1].success, 'collections per-record results');
  // jsforce's default login (no OAuth client configured) is the partner SOAP login call.
  const conn3 = new jsforce.Connection({ loginUrl: env.WEFT_URL, version: '60.0' });
  const soap = await conn3.login(env.WEFT_USERNAME, env.WEFT_PASSWORD);
  check(soap.organizationId && conn3.instanceUrl === env.WEFT_URL, 'SOAP login: ' + conn3.instanceUrl);
  check((await conn3.query('SELECT COUNT() FROM User')).totalSize > 0, 'query after SOAP login');
  let refused = false;
  try {
    await new jsforce.Connection({ loginUrl: env.WEFT_URL }).login(env.WEFT_USERNAME, 'wrong');
  } catch (e) {
    refused = /INVALID_LOGIN/.test(String(e));
  }
  check(refused, 'SOAP login refuses a bad password');
  console.log('jsforce conformance: ok');
}

main().catch((e) => {
  console.error('FAIL: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
